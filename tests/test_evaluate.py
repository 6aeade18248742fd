"""Evaluating any model on a split part."""
import numpy as np
import pytest
import torch
from model_zoo import randomised

from pakd.evaluate import evaluate, exclusion_parts, fit_platt, ranking_metrics

EVAL = dict(ks=[5, 10], positive_above=3.0, negative_below=3.0, relevant_min_rating=None,
            chunk=7)


def test_platt_recovers_a_known_logistic_curve():
    rng = np.random.default_rng(0)
    s = rng.uniform(1, 5, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * s - 6.0)))).astype(float)
    a, b = fit_platt(s, y)
    assert a == pytest.approx(2.0, rel=0.05) and b == pytest.approx(-6.0, rel=0.05)


def test_test_ranking_excludes_train_and_valid_items():
    assert exclusion_parts("test") == ("train", "valid")
    assert exclusion_parts("valid") == ("train",)


def test_scores_and_model_paths_agree_and_user_subsets_work(tiny_enc):
    m = randomised("lightweight_model", tiny_enc).float()
    with torch.no_grad():
        s = m.score_all(torch.arange(tiny_enc.n_users))
    a = evaluate(m, tiny_enc, "test", **EVAL)
    b = evaluate(m, tiny_enc, "test", **EVAL, scores=s)
    for k in ("rmse", "auc", "ndcg@10", "recall@5"):
        assert a[k] == pytest.approx(b[k]), k
    some = ranking_metrics(None, tiny_enc, "test", ks=[10], relevant_min_rating=None, chunk=3,
                           scores=s, users=[0, 1, 2])
    assert some["users_evaluated"] + some["users_without_relevant"] == 3


def test_ndcg_rel4_equals_ndcg_with_relevant_min_rating_4(tiny_enc):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(tiny_enc.n_users, tiny_enc.n_items, generator=g)
    kw = dict(ks=[10], chunk=5, scores=s)
    every = ranking_metrics(None, tiny_enc, "test", relevant_min_rating=None, **kw)
    liked = ranking_metrics(None, tiny_enc, "test", relevant_min_rating=4.0, **kw)
    assert every["ndcg@10_rel4"] == pytest.approx(liked["ndcg@10"])
    assert every["users_evaluated_rel4"] == liked["users_evaluated"]
    assert every["users_evaluated_rel4"] < every["users_evaluated"]
    assert every["ndcg@10_rel4"] != pytest.approx(every["ndcg@10"])
