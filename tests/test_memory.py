"""Bounded memory: chunk sizes follow --max-memory-gb, and chunking never changes a result."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import KINDS, randomised
from pakd import memory
from pakd.cli import main
from pakd.evaluate import ranking_metrics
from pakd.models import build
from pakd.models.ensemble import Ensemble
from pakd.errors import PakdError

KW = dict(ks=[1, 3], relevant_min_rating=None, per_user=True)


def test_user_chunk_follows_the_budget():
    per_user = 1000 * memory.BYTES_PER_CELL
    gb = 64 * per_user / memory.BLOCK_SHARE / 2**30          # exactly 64 users' blocks
    assert memory.user_chunk(1000, gb) == 64
    assert memory.user_chunk(1000, gb * 2) == 128
    assert memory.user_chunk(1000, gb, n_users=10) == 10     # never more than there are
    with pytest.raises(PakdError, match=r"--max-memory-gb 1e-07 is too small to score one "
                                        r"user's 1,000 items .*raise --max-memory-gb"):
        memory.user_chunk(1000, 1e-7)
    assert memory.cache_entries(1.0) == 2**30 // 8


def _every_kind(enc):
    models = {k: randomised(k, enc) for k in KINDS}
    seen = enc.seen(("train",))
    ease = build("ease", enc.schema, {"lam": 1.0, "history": seen.nnz})
    ease.set_history(seen.indptr, seen.indices)
    als = build("als", enc.schema)
    torch.manual_seed(3)
    with torch.no_grad():
        for m in (ease, als):
            for p in m.parameters():
                p.normal_(0, 0.5)
    models.update(ease=ease, als=als,
                  ensemble=Ensemble({"svd": models["svd"], "autoint": models["autoint"]},
                                    {"svd": 0.5, "autoint": 0.5},
                                    {"svd": "balance", "autoint": "balance"}).double())
    return models


def test_chunked_topk_equals_unchunked_for_every_model_kind(tiny_enc):
    for name, model in _every_kind(tiny_enc).items():
        model.eval()
        whole = ranking_metrics(model, tiny_enc, "test", chunk=tiny_enc.n_users, **KW)
        one = ranking_metrics(model, tiny_enc, "test", chunk=3, **KW)
        assert whole["users_evaluated"] > 5, name
        for key, v in whole["per_user"].items():
            np.testing.assert_array_equal(one["per_user"][key], v, err_msg=f"{name} {key}")


def test_the_budget_sets_the_chunk_and_the_result_stays(tiny_enc):
    model = randomised("xdeepfm", tiny_enc)
    scores = torch.cat([model.score_all(torch.arange(s, min(s + 7, tiny_enc.n_users)))
                        for s in range(0, tiny_enc.n_users, 7)]).float()
    blocks = []

    def rows(users):
        blocks.append(len(users))
        return scores[users]

    per_user = tiny_enc.n_items * memory.BYTES_PER_CELL / memory.BLOCK_SHARE / 2**30
    got = {}
    for gb in (per_user * 3.5, 100.0):
        blocks.clear()
        got[gb] = ranking_metrics(None, tiny_enc, "test", chunk=512, max_memory_gb=gb,
                                  scores=rows, **KW)
        assert max(blocks) == (3 if gb < 1 else sum(blocks)), gb
    a, b = got.values()
    assert a.pop("per_user").keys() == b.pop("per_user").keys()
    assert a == b


def test_a_budget_too_small_stops_before_training(tmp_path, capsys):
    run = tmp_path / "r"
    code = main(["run", "--out", str(run), "--profile", "quick", "-q",
                 "--max-memory-gb", "0.0000001"])
    err = capsys.readouterr().err
    assert code != 0 and "--max-memory-gb 1e-07 is too small" in err and "raise" in err
    assert not (run / "teachers").exists()
