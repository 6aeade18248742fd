"""Measured damage: the losses the Fisher predicts, and the checks built on them."""
import copy
import math

import pytest
import torch
from model_zoo import randomised

from pakd.fisher.damage import Examples, LossProbe, check_plan, check_units, losses
from pakd.models.ensemble import Ensemble


def test_losses_hand_computed():
    ex = Examples(torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([4.0, 0.0]),
                  torch.tensor([1.0, 0.0]), torch.tensor([True, False]))
    r = torch.tensor([3.0, 9.0], dtype=torch.float64)
    lg = torch.tensor([0.0, 0.0], dtype=torch.float64)
    out = losses(r, lg, ex, sigma2=2.0)
    assert out["rating"] == pytest.approx(0.5 * 1.0 / 2.0)          # only the rated pair
    assert out["ranking"] == pytest.approx(math.log(2))
    assert out["ensemble"] == pytest.approx((0.25 + 2 * math.log(2)) / 2)


def test_examples_pair_each_rating_with_a_negative(tiny_enc):
    ex = Examples.of_part(tiny_enc, "train", 10, seed=0)
    assert len(ex) == 20 and int(ex.has_rating.sum()) == 10
    assert torch.equal(ex.user[:10], ex.user[10:])
    again = Examples.of_part(tiny_enc, "train", 10, seed=0)
    assert torch.equal(ex.item, again.item)


def test_probe_of_an_intact_member_gives_the_ensemble_loss(tiny_enc):
    members = {k: randomised(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "autoint"])}
    ens = Ensemble(members, {"svd": 0.5, "autoint": 0.5},
                   {"svd": "balance", "autoint": "balance"}).double()
    ens.calibrate(tiny_enc.n_users, sample=8)
    ex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    sigma2 = {"svd": 1.0, "autoint": 1.0, "ensemble": 0.7}
    probe = LossProbe("svd", {"valid": ex}, sigma2, ens)
    got = probe(members["svd"], "valid")
    with torch.no_grad():
        out = ens(ex.user, ex.item)
    want = losses(out.rating.double(), out.logit.double(), ex, 0.7)["ensemble"]
    assert got["ensemble"] == pytest.approx(want, rel=1e-9)


def test_removing_a_dead_unit_measures_zero_and_is_predicted_zero(tiny_enc):
    m = randomised("svd", tiny_enc)
    with torch.no_grad():                       # factor 1 is dead: all its entries zero
        m.user_factors.weight[:, 1] = 0
        m.item_factors.weight[:, 1] = 0
    ex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    probe = LossProbe("svd", {"valid": ex, "train": ex}, {"svd": 1.0})
    tested = [{"group": "factors", "kind": "mf_factor", "unit": 1},
              {"group": "factors", "kind": "mf_factor", "unit": 0}]
    fisher = {n: torch.ones_like(p, dtype=torch.float64) for n, p in m.named_parameters()}
    from pakd.prune import DiagonalFisher
    cost = DiagonalFisher(fisher).scores(m)
    tables = {("rating", "empirical"): {("factors", u): float(cost["factors"][u])
                                        for u in range(m.factors)}}
    magnitude = {("factors", u): 1.0 for u in range(m.factors)}
    res = check_units(m, probe, tested, tables, magnitude, focus=["rating", "ranking"],
                      kinds=["empirical"], primary="rating")
    dead, alive = res["points"]
    assert dead["measured"]["rating"] == 0.0 and dead["predicted"]["rating/empirical"] == 0.0
    assert alive["measured"]["rating"] != 0.0 and alive["predicted"]["rating/empirical"] > 0
    assert set(alive["measured_train"]) == {"rating", "ranking", "ensemble"}


def test_plan_check_prunes_physically(tiny_enc):
    m = randomised("lightweight_model", tiny_enc).float()
    keep = {g.name: torch.arange(g.units) % 2 == 0 for g in m.structure()}
    ex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    tables = {("rating", "true"): {(g.name, u): 0.1 for g in m.structure() for u in range(g.units)}}
    out = check_plan(copy.deepcopy(m), keep, tables, "true", tiny_enc, ex, 1.0,
                     users=torch.arange(tiny_enc.n_users), relevant_min_rating=None)
    removed = sum(int((~k).sum()) for k in keep.values())
    assert out["predicted_loss_increase"]["rating"] == pytest.approx(0.1 * removed)
    assert out["params_after"] + out["params_removed"] == m.n_params()
    assert out["params_after"] < m.n_params() and 0 <= out["ndcg@10_after"] <= 1


@pytest.mark.parametrize("kind", ["xdeepfm", "autoint"])
def test_probe_reusing_the_intact_branch_measures_the_same_losses(kind, tiny_enc):
    from model_zoo import KINDS

    from pakd.prune import mask_units
    m = randomised(kind, tiny_enc, arch={**KINDS[kind], "dnn": [6, 5]}).float()
    ex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    sigma2 = {kind: 1.0}
    plain = LossProbe(kind, {"valid": ex}, sigma2)
    cached = LossProbe(kind, {"valid": ex}, sigma2, reference=m)
    for g in m.structure():
        keep = torch.ones(g.units, dtype=torch.bool)
        keep[0] = False
        damaged = mask_units(copy.deepcopy(m), g.name, keep)
        assert cached(damaged, "valid") == plain(damaged, "valid"), g.name
    assert cached(m, "valid") == plain(m, "valid")


def test_loss_gradient_matches_finite_differences(tiny_enc):
    from pakd.fisher.damage import loss_gradient
    m = randomised("svd", tiny_enc)
    ex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    g = loss_gradient(m, ex, 0.8, "ensemble", batch=7)
    p = m.item_factors.weight
    i, j = int(ex.item[0]), 1
    eps = 1e-6

    def loss():
        with torch.no_grad():
            return losses(*[t.double() for t in (m(ex.user, ex.item).rating,
                                                 m(ex.user, ex.item).logit)], ex, 0.8)["ensemble"]
    with torch.no_grad():
        p[i, j] += eps
    up = loss()
    with torch.no_grad():
        p[i, j] -= 2 * eps
    down = loss()
    with torch.no_grad():
        p[i, j] += eps
    assert float(g["item_factors.weight"][i, j]) == pytest.approx((up - down) / (2 * eps),
                                                                  rel=1e-5, abs=1e-9)


def test_taylor_is_exact_on_a_separable_quadratic_loss(tiny_enc):
    """For L = sum_i a_i theta_i^2 / 2 + b_i theta_i, the Taylor estimate with gradient
    a theta + b and curvature a equals the change of L when a unit's entries go to zero,
    gains (negative changes) included."""
    from pakd.prune import Taylor
    m = randomised("lightweight_model", tiny_enc)
    gen = torch.Generator().manual_seed(0)
    params = {n: p.detach() for n, p in m.named_parameters()}
    a = {n: torch.rand(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}
    b = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}

    def L(values):
        return sum(float((0.5 * a[n] * v ** 2 + b[n] * v).sum()) for n, v in values.items())
    grad = {n: a[n] * params[n] + b[n] for n in params}
    scores = Taylor(grad, a).scores(m)
    signs = set()
    for g in m.structure():
        for u in range(g.units):
            zeroed = {n: v.clone() for n, v in params.items()}
            for pname, dim, pos in g.owned(u):
                zeroed[pname].index_fill_(dim, pos, 0.0)
            change = L(zeroed) - L(params)
            assert float(scores[g.name][u]) == pytest.approx(change, rel=1e-9, abs=1e-12)
            signs.add(change > 0)
    assert signs == {True, False}          # it foresees gains as well as losses


def test_headline_spearman_is_measured_on_the_test_part(tiny_enc):
    """The Taylor gradient comes from valid, so the headline agreement (and "beats
    magnitude") is the test part's; valid's is kept as the in-sample figure."""
    import numpy as np

    from pakd.fisher import analysis as A
    m = randomised("svd", tiny_enc)
    vex = Examples.of_part(tiny_enc, "valid", 0, seed=1)
    tex = Examples.of_part(tiny_enc, "test", 0, seed=2)
    probe = LossProbe("svd", {"valid": vex, "test": tex}, {"svd": 1.0})
    tested = [{"group": "factors", "kind": "mf_factor", "unit": u} for u in range(m.factors)]
    g = torch.Generator().manual_seed(5)
    tables = {("rating", "true"): {("factors", u): float(torch.rand(1, generator=g))
                                   for u in range(m.factors)}}
    with torch.no_grad():
        magnitude = {("factors", u): float(m.user_factors.weight[:, u].pow(2).sum()
                                           + m.item_factors.weight[:, u].pow(2).sum())
                     for u in range(m.factors)}
    res = check_units(m, probe, tested, tables, magnitude, focus=["rating"], kinds=["true"],
                      primary="rating")
    pts = res["points"]
    test = np.array([p["measured_test"]["rating"] for p in pts])
    valid = np.array([p["measured"]["rating"] for p in pts])
    assert not np.allclose(test, valid)
    true = np.array([p["predicted"]["rating/true"] for p in pts])
    mag = np.array([p["predicted"]["magnitude"] for p in pts])
    assert res["headline_part"] == "test"
    assert res["spearman_true"] == pytest.approx(A.spearman(true, test))
    assert res["spearman_magnitude"] == pytest.approx(A.spearman(mag, test))
    assert res["in_sample"]["spearman_true"] == pytest.approx(A.spearman(true, valid))
    d, lo, hi, p = res["beats"]["true_vs_magnitude"]
    assert d == pytest.approx(A.spearman(true, test) - A.spearman(mag, test))
    assert lo <= d <= hi and 0 <= p <= 1
    assert res["test_part"]["by_objective"]["rating"]["beats"] == res["beats"]
    # without a test part the headline stays on valid, and says so
    res = check_units(m, LossProbe("svd", {"valid": vex}, {"svd": 1.0}), tested, tables,
                      magnitude, focus=["rating"], kinds=["true"], primary="rating")
    assert res["headline_part"] == "valid" and "test_part" not in res
    assert res["spearman_true"] == pytest.approx(A.spearman(true, valid))


def _one_rated_example(enc, model):
    """One rated valid pair, and the Gaussian variance that makes its empirical Fisher equal
    to its curvature: the squared residual."""
    ex = Examples.of_part(enc, "valid", 0, seed=1)
    one = Examples(ex.user[:1], ex.item[:1], ex.y_rating[:1], ex.y_rank[:1], ex.has_rating[:1])
    with torch.no_grad():
        r = model(one.user, one.item).rating.double()
    return one, float((r - one.y_rating.double()) ** 2)


@pytest.mark.parametrize("kind, groups", [("svd", ("factors",)), ("autoint", ("dnn.0",))])
def test_mask_taylor_is_exact_where_the_loss_is_quadratic_in_the_mask(kind, groups, tiny_enc):
    """With one rated example, the rating NLL is quadratic in a unit's contribution, and with
    sigma2 the squared residual the mask's Fisher is its curvature: the estimate must equal
    the measured change, for a dot-product dimension (degree 2: user and item rows gated
    together) and for a last-layer neuron (degree 1). A wrong degree is off by 2x or 4x."""
    from pakd.fisher.damage import mask_taylor
    from pakd.prune import find_group, mask_units
    m = randomised(kind, tiny_enc)
    one, s2 = _one_rated_example(tiny_enc, m)
    pred = mask_taylor(m, m.structure(), one, s2, "rating")
    with torch.no_grad():
        o = m(one.user, one.item)
    base = losses(o.rating.double(), o.logit.double(), one, s2)["rating"]
    checked = 0
    for name in groups:
        g = find_group(m, name)
        for u in range(g.units):
            keep = torch.ones(g.units, dtype=torch.bool)
            keep[u] = False
            d = mask_units(copy.deepcopy(m), name, keep)
            with torch.no_grad():
                o = d(one.user, one.item)
            change = losses(o.rating.double(), o.logit.double(), one, s2)["rating"] - base
            assert float(pred[name][u]) == pytest.approx(change, rel=1e-6, abs=1e-10), (name, u)
            checked += abs(change) > 1e-6
    assert checked >= 2
