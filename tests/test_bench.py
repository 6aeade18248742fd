"""Interleaved speed measurement: every model once per round, order rotating, ratios to
the reference with their spread (no timing is asserted: timings belong to benchmarks)."""
import time
from types import SimpleNamespace

import torch

from pakd.bench import interleaved


class Fake(torch.nn.Module):
    calls: list = []

    def __init__(self, name, delay):
        super().__init__()
        self.name, self.delay = name, delay
        self.schema = SimpleNamespace(n_users=5, n_items=7)

    def forward(self, u, i):
        Fake.calls.append(self.name)
        time.sleep(self.delay)
        return u.float()

    def score_all(self, users):
        time.sleep(self.delay)
        return torch.zeros(len(users), 7)


def test_rounds_rotate_and_report_ratio_ranges():
    Fake.calls = []
    models = {"teacher": Fake("teacher", 0.002), "a": Fake("a", 0.0), "b": Fake("b", 0.0)}
    out = interleaved(models, batch=4, seconds=0.01, rounds=3, reference="teacher")
    firsts = []
    for name in Fake.calls:
        if not firsts or firsts[-1] != name:
            firsts.append(name)
    assert firsts[:3] == ["teacher", "a", "b"] and firsts[3:6] == ["a", "b", "teacher"]
    for n in ("a", "b"):
        row = out["models"][n]
        lo, hi = row["speedup_latency_range"]
        assert lo <= row["speedup_latency"] <= hi
        assert row["bench_rounds"] == 3
    assert "speedup_latency" not in out["models"]["teacher"]
    assert out["rounds"] == 3 and out["reference"] == "teacher"
