"""From a Fisher to plans, friendliness and layer tables: the arithmetic, checked."""
import pytest
import torch
from model_zoo import randomised

from pakd.fisher import analysis as A
from pakd.prune import DiagonalFisher, params_after


def units_of(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    fisher = {n: torch.rand(p.shape, generator=g, dtype=torch.float64)
              for n, p in m.named_parameters()}
    return fisher, A.unit_table(m, DiagonalFisher(fisher), m.structure())


def test_plan_reaches_the_target_with_an_exact_count(tiny_enc):
    m = randomised("xdeepfm", tiny_enc)
    _, units = units_of(m)
    plan = A.make_plan(m, units, 0.3)
    left = params_after(m, plan["keep"])
    assert plan["params_removed_estimate"] == m.n_params() - left >= 0.3 * m.n_params()
    cost = {(u["group"], u["unit"]): u["cost"] for u in units}
    removed = [(g, int(i)) for g, k in plan["keep"].items() for i in torch.nonzero(~k).flatten()]
    assert plan["predicted_loss_increase"] == pytest.approx(sum(cost[r] for r in removed))


def test_plan_takes_free_units_first(tiny_enc):
    m = randomised("lightweight_model", tiny_enc)
    _, units = units_of(m)
    for u in units:
        if u["group"] == "rank_factors" and u["unit"] == 1:
            u["cost"] = 0.0
    plan = A.make_plan(m, units, 0.01)
    assert not plan["keep"]["rank_factors"][1]


def test_friendliness_stays_under_its_cost_share_and_grows_with_it(tiny_enc):
    m = randomised("autoint", tiny_enc)
    _, units = units_of(m)
    total = sum(u["cost"] for u in units)
    scores = []
    for t in (0.01, 0.1, 0.5):
        f = A.friendliness(m, units, t)
        assert f["estimated_cost"] <= t * total + 1e-12
        assert 0 <= f["score"] <= 1
        scores.append(f["score"])
    assert scores == sorted(scores) and scores[-1] > 0


def test_layer_table_shares_and_normalisation(tiny_enc):
    m = randomised("svd", tiny_enc)
    fisher, _ = units_of(m)
    crit = DiagonalFisher(fisher)
    rows = A.layer_table(fisher, crit.saliency(m))
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["normalised"] == pytest.approx(1.0)
    assert all(a["importance"] >= b["importance"] for a, b in zip(rows, rows[1:]))
    only = A.layer_table(fisher, crit.saliency(m), only=["item"])
    assert {r["name"] for r in only} == {"item_factors", "item_bias", "item_rank_bias",
                                         "item_rank_factors"}


def test_sample_units_spreads_over_groups():
    units = [{"group": g, "unit": u} for g in "abc" for u in range(10)]
    got = A.sample_units(units, 6, seed=0)
    assert {u["group"] for u in got} == {"a", "b", "c"} and len(got) == 6
    assert A.sample_units(units[:4], 6, seed=0) == units[:4]


def test_sample_units_fills_the_share_small_groups_cannot():
    """AutoInt+: 16 embedding dims, 3 layers of 2 heads, 2 x 400 neurons -> 60 units: every
    head and dimension, the rest spread over the neuron layers."""
    sizes = {"embedding": 16, "att.0": 2, "att.1": 2, "att.2": 2, "dnn.0": 400, "dnn.1": 400}
    units = [{"group": g, "unit": u} for g, n in sizes.items() for u in range(n)]
    got = A.sample_units(units, 60, seed=0)
    count = {g: sum(u["group"] == g for u in got) for g in sizes}
    assert len(got) == 60 and len({(u["group"], u["unit"]) for u in got}) == 60
    assert count["att.0"] == count["att.1"] == count["att.2"] == 2
    # 54 left after the heads: 18 per remaining group, of which the embedding has 16
    assert count["embedding"] == 16 and count["dnn.0"] == count["dnn.1"] == 19


def test_paired_spearman_by_hand():
    import numpy as np
    rng = np.random.default_rng(0)
    meas = rng.normal(size=40)
    perfect, noise = meas * 2 + 1, rng.normal(size=40)
    d, lo, hi, p = A.paired_spearman(perfect, noise, meas, resamples=500)
    assert d == pytest.approx(1 - A.spearman(noise, meas))
    assert 0 < lo <= d <= hi and p < 0.01          # a beats b: the interval excludes 0
    d2, lo2, hi2, p2 = A.paired_spearman(noise, perfect, meas, resamples=500)
    assert d2 == pytest.approx(-d) and hi2 < 0    # swapped: the mirror image
    same = A.paired_spearman(noise, noise, meas, resamples=200)
    assert same == [0.0, 0.0, 0.0, 1.0]
    assert A.paired_spearman([1, 2], [2, 1], [1, 2]) is None
