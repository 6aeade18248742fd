"""Bootstrap intervals and paired differences over users, checked as statistics."""
import math

import numpy as np
import pytest
from model_zoo import randomised

from pakd import metrics as M
from pakd.evaluate import evaluate
from pakd.errors import PakdError
from pakd.stats import (bootstrap, holm, interval_of, intervals, metrics_under, paired,
                        paired_of, pooled_paired, resample_weights, verdict)

EVAL = dict(ks=[10], positive_above=3.0, negative_below=3.0, relevant_min_rating=None, chunk=7)


def payload(n_users=60, seed=0, mean=0.3):
    """Synthetic per-user results: NDCG draws with a known mean, a few ratings each."""
    rng = np.random.default_rng(seed)
    users = np.arange(n_users)
    rows = np.repeat(users, 5)
    true = rng.integers(1, 6, len(rows)).astype(float)
    pred = np.clip(true + rng.normal(0, 1, len(rows)), 1, 5)
    keep, y = M.binary_labels(true)
    return {"users": users, "rank_users": users,
            "ndcg@10": rng.binomial(1, mean, n_users).astype(float),
            "recall@10": rng.random(n_users), "row_user": rows, "pred": pred, "true": true,
            "bin_user": rows[keep], "bin_score": pred[keep],
            "bin_prob": 1 / (1 + np.exp(-(pred[keep] - 3))), "bin_label": y}


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    hits = 0
    for rep in range(200):
        lo, hi = intervals(payload(seed=rep), resamples=400, seed=rep,
                           metrics=["ndcg@10"])["ndcg@10"]
        hits += lo <= 0.3 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_identical_models_differ_by_exactly_zero():
    p = payload()
    for m, (d, lo, hi) in paired(p, p, resamples=200).items():
        assert d == lo == hi == 0, m
        assert verdict([d, lo, hi], lower_is_better=m in ("rmse", "mae", "logloss")) == "tie"


def test_weighted_auc_equals_auc_on_the_duplicated_rows():
    p = payload(n_users=30, seed=3)
    w = resample_weights(30, 3, seed=1)
    got = metrics_under(w, p, ["auc", "rmse"])
    for r in range(3):
        rep = np.repeat(np.arange(len(p["bin_user"])), w[r][p["bin_user"]].astype(int))
        assert got["auc"][r] == pytest.approx(M.auc(p["bin_score"][rep], p["bin_label"][rep]))
        rr = np.repeat(np.arange(len(p["row_user"])), w[r][p["row_user"]].astype(int))
        assert got["rmse"][r] == pytest.approx(M.rmse(p["pred"][rr], p["true"][rr]))


def test_weighted_auc_in_blocks_of_resamples_with_many_ties(monkeypatch):
    """Resamples taken a few at a time (the block smaller than one resample's rows, too) and
    scores rounded into heavy ties give the AUC of the duplicated rows, ties counted half."""
    import pakd.stats as S
    p = payload(n_users=25, seed=5)
    p["bin_score"] = np.round(p["bin_score"])
    w = resample_weights(25, 7, seed=2)
    for block in (1, 50, 10 ** 6):
        monkeypatch.setattr(S, "AUC_BLOCK", block)
        p.pop("_auc", None)
        got = metrics_under(w, p, ["auc"])["auc"]
        for r in range(7):
            rep = np.repeat(np.arange(len(p["bin_user"])), w[r][p["bin_user"]].astype(int))
            assert got[r] == pytest.approx(M.auc(p["bin_score"][rep], p["bin_label"][rep]))


def test_per_user_arrays_reproduce_the_reported_metrics(tiny_enc):
    m = randomised("lightweight_model", tiny_enc).float()
    out = evaluate(m, tiny_enc, "test", **EVAL, per_user=True)
    p = out["per_user"]
    again = metrics_under(np.ones((1, len(p["users"]))), p)
    for k in ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10"):
        assert again[k][0] == pytest.approx(out[k], rel=1e-12, abs=1e-15), k
    assert p["ndcg@10"].mean() == out["ndcg@10"]


def test_verdicts_follow_the_interval():
    assert verdict([0.01, 0.002, 0.02], lower_is_better=False) == "better"
    assert verdict([0.01, 0.002, 0.02], lower_is_better=True) == "worse"
    assert verdict([0.01, -0.002, 0.02], lower_is_better=False) == "tie"
    with pytest.raises(Exception, match="at least 2 users"):
        resample_weights(1, 10, 0)


def test_pooled_difference_is_the_mean_of_the_seeds_and_one_seed_is_the_paired_one():
    pairs = [(payload(seed=s), payload(seed=s + 100, mean=0.5)) for s in range(3)]
    got = pooled_paired(pairs, resamples=300, metrics=["ndcg@10", "rmse"])
    for m in ("ndcg@10", "rmse"):
        each = [paired(a, b, resamples=10, metrics=[m])[m][0] for a, b in pairs]
        assert got[m][0] == pytest.approx(np.mean(each))
        assert got[m][1] <= got[m][0] <= got[m][2]
    one = pooled_paired(pairs[:1], resamples=300, metrics=["ndcg@10"])["ndcg@10"]
    alone = paired(*pairs[0], resamples=10, metrics=["ndcg@10"])["ndcg@10"][0]
    assert one[0] == pytest.approx(alone)
    same = pooled_paired([(a, a) for a, _ in pairs], resamples=50, metrics=["ndcg@10"])
    assert same["ndcg@10"][:3] == [0.0, 0.0, 0.0] and same["ndcg@10"][3] == 1.0


def test_pooled_interval_widens_when_the_seeds_disagree():
    """Two-stage resampling carries the variance between seeds: seeds whose differences
    point in opposite directions give a wider interval than seeds that agree."""
    base = payload(n_users=200, seed=1)

    def shifted(p, by):
        return {**p, "ndcg@10": p["ndcg@10"] + by}
    agree = pooled_paired([(base, shifted(base, 0.05))] * 3, resamples=400, metrics=["ndcg@10"])
    split = pooled_paired([(base, shifted(base, 0.15)), (base, shifted(base, -0.05)),
                           (base, shifted(base, 0.05))], resamples=400, metrics=["ndcg@10"])
    assert agree["ndcg@10"][0] == pytest.approx(split["ndcg@10"][0])
    width = {k: v["ndcg@10"][2] - v["ndcg@10"][1] for k, v in (("agree", agree), ("split", split))}
    assert width["split"] > width["agree"] + 0.05


def test_holm_adjusts_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04, kept monotone)
    got = holm({"a": 0.04, "b": 0.01, "c": 0.02, "d": float("nan")})
    assert got["b"] == pytest.approx(0.03) and got["c"] == pytest.approx(0.04)
    assert got["a"] == pytest.approx(0.04) and np.isnan(got["d"])
    assert holm({"x": 0.6, "y": 0.5})["x"] == 1.0


def test_one_bootstrap_per_model_gives_the_explicit_intervals_and_differences():
    """The distill stage bootstraps each model once and reads every interval and paired
    difference from it: equal to percentiles of metrics_under on the resample weights."""
    a, b = payload(seed=1), payload(seed=2, mean=0.4)
    w = resample_weights(60, 300, 5)
    ma, mb = metrics_under(w, a), metrics_under(w, b)
    one = metrics_under(np.ones((1, 60)), a)
    ba, bb = bootstrap(a, resamples=300, seed=5), bootstrap(b, resamples=300, seed=5)
    for m, (lo, hi) in interval_of(ba).items():
        assert lo == pytest.approx(np.nanpercentile(ma[m], 2.5))
        assert hi == pytest.approx(np.nanpercentile(ma[m], 97.5))
    for m, (d, lo, hi) in paired_of(ba, bb).items():
        assert d == pytest.approx(metrics_under(np.ones((1, 60)), b)[m][0] - one[m][0])
        assert lo == pytest.approx(np.nanpercentile(mb[m] - ma[m], 2.5))
        assert hi == pytest.approx(np.nanpercentile(mb[m] - ma[m], 97.5))
    assert paired_of(ba, bb) == paired(a, b, resamples=300, seed=5)
    with pytest.raises(PakdError, match="same resamples"):
        paired_of(ba, bootstrap(b, resamples=200, seed=5))
    with pytest.raises(PakdError, match="same users"):
        paired_of(ba, bootstrap(payload(n_users=61), resamples=300, seed=5))


def test_t_interval_matches_a_hand_computation():
    from pakd.stats import t_interval
    # values 1, 2, 3, 6: mean 3, sd sqrt(((-2)^2 + 1 + 0 + 9) / 3) = sqrt(14 / 3);
    # t(0.975, 3) = 3.182446305 (tables)
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, 6.0])
    half = 3.182446305 * math.sqrt(14 / 3) / 2
    assert mean == pytest.approx(3.0)
    assert lo == pytest.approx(3 - half, abs=1e-8) and hi == pytest.approx(3 + half, abs=1e-8)
    # the case: three seeds whose mean is above 0 and whose t interval is not
    m, lo, hi = t_interval([0.0100, -0.0010, 0.0090], level=0.90)
    assert lo < 0 < m < hi
    assert t_interval([0.5])[0] == 0.5 and all(np.isnan(t_interval([0.5])[1:]))
    assert all(np.isnan(t_interval([])))


def test_pooled_paired_reports_the_t_interval_over_seed_differences():
    from pakd.stats import POOLED_FIELDS, t_interval
    base = payload(n_users=120, seed=2)
    shifts = [0.02, -0.01, 0.05, 0.00, 0.03]                 # five seeds

    def shifted(p, by):
        return {**p, "ndcg@10": p["ndcg@10"] + by}
    got = pooled_paired([(base, shifted(base, b)) for b in shifts], resamples=200,
                        metrics=["ndcg@10"])["ndcg@10"]
    assert len(got) == len(POOLED_FIELDS) == 6
    assert got[0] == pytest.approx(np.mean(shifts))
    assert got[4:] == pytest.approx(t_interval(shifts)[1:])


def test_p_values_state_their_resolution():
    from pakd.stats import p_text
    assert p_text(0.0, 1000) == "< 0.002 (1,000 resamples)"
    assert p_text(0.0, 1000, below=0.016) == "< 0.016 (1,000 resamples)"
    assert p_text(0.032, 1000) == "0.032"
    assert p_text(float("nan"), 1000) == "–"


def test_holm_verdicts_never_rest_on_the_bootstraps_resolution():
    """A family of 40 comparisons (20 rows x 2 metrics) whose bootstrap p are all 0: at
    1,000 resamples a p of 0 only says p < 0.002, which Holm multiplies to < 0.08 for the
    smallest, so no verdict can stand at 5%; at `verdict_resamples` (R >= 8 m / 0.05,
    in thousands) they all do."""
    from pakd.pool import holm_verdicts, verdict_resamples

    def rows(n):
        nan = float("nan")
        return [{"method": f"m{i}", "budget": "3%", "pooled": {"fisher_kd": {
            "ndcg@10": [-0.05, -0.06, -0.04, 0.0, nan, nan],
            "rmse": [0.02, 0.01, 0.03, 0.0, nan, nan]}}} for i in range(n)]
    keys = [("fisher_kd", "3%")] + [(f"m{i}", "3%") for i in range(20)] + [("teacher", None)]
    assert verdict_resamples(keys, 1000) == 7000          # 8 x 40 / 0.05 = 6,400
    assert verdict_resamples(keys[:3], 1000) == 1000      # 4 comparisons: 1,000 is enough
    assert verdict_resamples(keys[:3], 5000) == 5000
    coarse, fine = rows(20), rows(20)
    holm_verdicts(coarse, 1000)
    holm_verdicts(fine, verdict_resamples(keys, 1000))
    assert {e["fisher_kd_is"]["ndcg@10"] for e in coarse} == {"tie"}
    assert {e["fisher_kd_is"]["ndcg@10"] for e in fine} == {"better"}
    assert {e["fisher_kd_is"]["rmse"] for e in fine} == {"better"}
    assert coarse[0]["holm_p_below"]["ndcg@10"] == pytest.approx(40 * 0.002)
