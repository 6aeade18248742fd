"""Catalogue scoring speed of the default xDeepFM and AutoInt+: pairs per second of
`score_all` (the ranking logit alone: the head folded into the CIN, the DNN's first layer
applied per user and per item) against the forward pass it replaced (every output of every
pair, then the logit taken), for passes of 512 to 8,192 pairs.

The models have random weights (speed does not depend on them) and read the fields of a
synthetic table of ML-1M's shape (`ml1m_shape.write_ml1m_shape`: 6,040 users, 3,706
movies; gender, age, occupation, zip, genres, year), so the figures are time only. Each
figure is the best of ``--rounds`` passes over ``--users`` users x the whole catalogue.

::

    .venv/bin/python benchmarks/catalogue_scoring.py --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ml1m_shape import write_ml1m_shape  # noqa: E402

PASSES = (512, 1024, 2048, 4096, 8192)


def forward_scores(model, users: torch.Tensor) -> torch.Tensor:
    """The scoring before the fold: every pair through the whole forward pass (both
    outputs and the hidden vector), the ranking logit kept."""
    items = torch.arange(model.schema.n_items)
    n = len(items)
    out = torch.empty(len(users), n)
    step = max(1, 32768 // n)
    for s in range(0, len(users), step):
        u = users[s:s + step]
        e = model.embedding.pairs(u, items)
        lin = model.linear.pairs(u, items).sum(1)
        flat = out[s:s + len(u)].view(-1)
        for p in range(0, len(e), model.PAIR_BATCH):
            flat[p:p + model.PAIR_BATCH] = model.interact(e[p:p + model.PAIR_BATCH],
                                                          lin[p:p + model.PAIR_BATCH]).logit
    return out


def rate(fn, users: torch.Tensor, n_items: int, rounds: int) -> float:
    best = float("inf")
    with torch.inference_mode():
        for _ in range(rounds):
            t = time.perf_counter()
            fn(users)
            best = min(best, time.perf_counter() - t)
    return len(users) * n_items / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pakd.config import RunConfig
    from pakd.data import encode, load, make_split
    from pakd.models import build
    from pakd.config.sections import arch_of
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ml-1m"
        write_ml1m_shape(folder, 0)
        cfg = RunConfig.model_validate({"data": {"dataset": "ml-1m", "dir": str(folder)},
                                        "quiet": True})
        ds = load(cfg.data, quiet=True)
        enc = encode(ds, make_split(ds.ratings, seed=0), n_buckets=cfg.data.n_buckets,
                     max_tokens=cfg.data.max_tokens)
    users = torch.arange(args.users)
    out = {"synthetic": True, "note": "random weights on ML-1M's synthetic shape: time only",
           "users": args.users, "items": enc.n_items, "rounds": args.rounds,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "machine": platform.machine(), "torch": torch.__version__, "models": {}}
    for kind in ("xdeepfm", "autoint"):
        torch.manual_seed(0)
        model = build(kind, enc.schema, arch_of(getattr(cfg, kind), kind), tables=enc.tables,
                      rating_mean=3.5).eval()
        default = model.PAIR_BATCH
        with torch.inference_mode():
            same = torch.allclose(model.score_all(users[:8]), forward_scores(model, users[:8]),
                                  rtol=1e-4, atol=1e-4)
        row = {"fields": model.embedding.n_fields, "params": model.n_params(),
               "default_pass": default, "equal_to_forward": bool(same),
               "score_all_pairs_per_s": {}, "forward_pairs_per_s": {}}
        for p in PASSES:
            model.PAIR_BATCH = p
            row["score_all_pairs_per_s"][p] = round(rate(model.score_all, users, enc.n_items,
                                                         args.rounds))
            row["forward_pairs_per_s"][p] = round(rate(lambda u: forward_scores(model, u),
                                                       users, enc.n_items, args.rounds))
            print(kind, p, row["score_all_pairs_per_s"][p], row["forward_pairs_per_s"][p],
                  flush=True)
        out["models"][kind] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalogue_scoring.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
