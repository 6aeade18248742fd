"""Importance criteria behind one interface, checked against brute force."""
import pytest
import torch
from model_zoo import KINDS as ZOO
from model_zoo import randomised

from pakd.models import build
from pakd.prune import DiagonalFisher, Magnitude, MaskFisher, Random, criterion, unit_params

KINDS = {
    "lightweight_model": {"factors": 4, "rank_factors": 3, "hidden": [5, 3]},
    "xdeepfm": {"embed_dim": 3, "cin_layers": [4, 2], "dnn": [5]},
    "autoint": {"embed_dim": 3, "layers": 2, "heads": 2, "head_dim": 2},
    "svd": {"factors": 3, "rank_factors": 2},
}


def per_example_loss(out, y):
    return (out.rating - y) ** 2 + 0.5 * out.logit ** 2


@pytest.mark.parametrize("kind", KINDS)
def test_mask_fisher_matches_finite_differences(kind, tiny_enc):
    """sum_n (d l_n / d m_u)^2 from activations equals central differences on unit masks."""
    torch.manual_seed(0)
    m = build(kind, tiny_enc.schema, KINDS[kind], tables=tiny_enc.tables, rating_mean=3.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.4)
    tr = tiny_enc.parts["train"]
    u, i, y = tr.user[:9], tr.item[:9], tr.rating[:9].double()
    mf = MaskFisher(model=m)
    per_example_loss(m(u, i), y).sum().backward()
    mf.record([torch.arange(9)], 9)
    mf.detach()
    modules = dict(m.named_modules())
    eps = 1e-6
    for g in m.structure():
        for unit in range(g.units):
            def run(scale):
                hs = []
                for name, idx in g.acts:
                    pos = idx[unit]

                    def hook(mod, inp, out, pos=pos):
                        out = out.clone()
                        out[..., pos] = out[..., pos] * scale
                        return out
                    hs.append(modules[name].register_forward_hook(hook))
                try:
                    with torch.no_grad():
                        return per_example_loss(m(u, i), y)
                finally:
                    for h in hs:
                        h.remove()
            d = (run(1 + eps) - run(1 - eps)) / (2 * eps)
            want = float((d ** 2).sum())
            got = float(mf.sums[g.name][unit])
            assert got == pytest.approx(want, rel=1e-4, abs=1e-10), (g.name, unit)


def test_mask_fisher_groups_several_runs_into_examples(tiny_enc):
    """Two forward runs per step: pairs of one example add up before squaring."""
    torch.manual_seed(0)
    m = build("lightweight_model", tiny_enc.schema, KINDS["lightweight_model"],
              tables=tiny_enc.tables, rating_mean=3.0).double()
    tr = tiny_enc.parts["train"]
    u, i = tr.user[:6], tr.item[:6]
    one = MaskFisher(model=m)
    (m.pair_logits(torch.cat([u, u]), torch.cat([i, (i + 1) % tiny_enc.n_items])) ** 2).sum().backward()
    one.record([torch.cat([torch.arange(6), torch.arange(6)])], 6)
    one.detach()
    m.zero_grad()
    two = MaskFisher(model=m)
    a = m.pair_logits(u, i)
    two.next_call()
    b = m.pair_logits(u, (i + 1) % tiny_enc.n_items)
    ((a ** 2).sum() + (b ** 2).sum()).backward()
    two.record([torch.arange(6), torch.arange(6)], 6)
    two.detach()
    for name in one.sums:
        assert torch.allclose(one.sums[name], two.sums[name]), name
    assert two.sums["rank_factors"].sum() > 0


def test_mask_fisher_buckets_normalise_each_loss(tiny_enc):
    """Bucketed sums add up to the unbucketed ones; weighted scores are each bucket's share
    of its total sensitivity, so rescaling one loss leaves them unchanged."""
    torch.manual_seed(0)
    m = build("lightweight_model", tiny_enc.schema, KINDS["lightweight_model"],
              tables=tiny_enc.tables, rating_mean=3.0).double()
    tr = tiny_enc.parts["train"]
    u, i, y = tr.user[:8], tr.item[:8], tr.rating[:8].double()
    bucket = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])

    def run(scale, balance):
        m.zero_grad()
        mf = MaskFisher(balance, model=m)
        out = m(u, i)
        loss = ((out.rating[:4] - y[:4]) ** 2).sum() + scale * (out.logit[4:] ** 2).sum()
        loss.backward()
        mf.record([torch.arange(8)], 8, bucket if balance else None)
        mf.detach()
        return mf

    one, two = run(1.0, None), run(1.0, [1.0, 3.0])
    for name in one.sums:
        assert torch.allclose(one.sums[name], two.sums[name])
    w = two.scores()
    assert sum(float(v.sum()) for v in w.values()) == pytest.approx(4.0)
    scaled = run(100.0, [1.0, 3.0]).scores()
    for name in w:
        assert torch.allclose(w[name], scaled[name]), name
    raw, raw_scaled = one.scores(), run(100.0, None).scores()
    assert not torch.allclose(raw["rank_factors"], raw_scaled["rank_factors"])


def test_magnitude_per_parameter_ranks_by_mean_squared_weight(tiny_enc):
    """One magnitude criterion: the cost is sum theta^2 over a unit's entries; ranked per
    parameter it is the mean squared weight."""
    m = randomised("lightweight_model", tiny_enc, arch=ZOO["lightweight_model"])
    crit = Magnitude()
    assert crit.per_parameter
    scores, cnt = crit.scores(m), unit_params(m)
    params = {n: p.detach() for n, p in m.named_parameters()}
    g = next(g for g in m.structure() if g.name == "rank_factors")
    for u in range(g.units):
        want = sum(float((params[p].index_select(d, pos) ** 2).sum()) for p, d, pos in g.owned(u))
        assert float(scores[g.name][u]) == pytest.approx(want)
        n = sum(params[p].index_select(d, pos).numel() for p, d, pos in g.owned(u))
        assert int(cnt[g.name][u]) == n


def test_diagonal_fisher_is_half_f_theta_squared(tiny_enc):
    m = randomised("svd", tiny_enc, arch=ZOO["svd"])
    fisher = {n: torch.rand_like(p) for n, p in m.named_parameters()}
    crit = DiagonalFisher(fisher)
    s = crit.scores(m)
    w = m.user_factors.weight.detach()
    q = m.item_factors.weight.detach()
    want = 0.5 * (fisher["user_factors.weight"][:, 2] * w[:, 2] ** 2).sum() + \
        0.5 * (fisher["item_factors.weight"][:, 2] * q[:, 2] ** 2).sum()
    assert float(s["factors"][2]) == pytest.approx(float(want))


def test_random_is_seeded_and_the_factory_names_every_criterion(tiny_enc):
    m = randomised("svd", tiny_enc, arch=ZOO["svd"])
    a = Random(torch.Generator().manual_seed(4)).scores(m)
    b = Random(torch.Generator().manual_seed(4)).scores(m)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not Random(torch.Generator()).per_parameter
    assert isinstance(criterion("fisher", balance=[1, 3]), MaskFisher)
    assert isinstance(criterion("magnitude"), Magnitude)
    with pytest.raises(ValueError):
        criterion("taylor")


def test_mask_fisher_detach_removes_every_hook(tiny_enc):
    m = randomised("autoint", tiny_enc, arch=ZOO["autoint"])
    mf = MaskFisher(model=m)
    assert any(mod._forward_hooks for mod in m.modules())
    mf.detach()
    assert not any(mod._forward_hooks for mod in m.modules())
