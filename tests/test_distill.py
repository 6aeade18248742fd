import pytest
import torch

from pakd.distill.importance import MaskFisher, choose_units, unit_params
from pakd.distill.losses import listwise_kl
from pakd.distill.pakd import schedule
from pakd.models import build

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
    mf = MaskFisher(m)
    per_example_loss(m(u, i), y).sum().backward()
    mf.accumulate([torch.arange(9)], 9)
    mf.close()
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


def test_cubic_schedule():
    assert schedule(0, 10, 0.5) == 0
    assert schedule(10, 10, 0.5) == pytest.approx(0.5)
    assert schedule(5, 10, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert schedule(20, 10, 0.5) == pytest.approx(0.5)


def test_choose_units_meets_the_need_and_keeps_minimum(tiny_enc):
    m = build("lightweight_model", tiny_enc.schema, {"factors": 6, "rank_factors": 3, "hidden": [4]},
              tables=tiny_enc.tables)
    cnt = unit_params(m)
    scores = {g.name: torch.arange(g.units, dtype=torch.float64) for g in m.structure()}
    keep = choose_units(m, scores, need=10**9, per_param=False)
    for g in m.structure():
        assert int(keep[g.name].sum()) == g.min_units
    keep = choose_units(m, scores, need=1, per_param=False)
    removed = sum(int(cnt[n][~k].sum()) for n, k in keep.items())
    assert 1 <= removed and sum(int((~k).sum()) for k in keep.values()) == 1


def test_listwise_kl_zero_iff_same_distribution():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    assert listwise_kl(s, s + 5.0).item() == pytest.approx(0.0, abs=1e-7)  # shift-invariant
    assert listwise_kl(s, s.flip(1)).item() > 0.1


def test_mask_fisher_groups_several_runs_into_examples(tiny_enc):
    """Two forward runs per step: pairs of one example add up before squaring."""
    torch.manual_seed(0)
    m = build("lightweight_model", tiny_enc.schema, KINDS["lightweight_model"],
              tables=tiny_enc.tables, rating_mean=3.0).double()
    tr = tiny_enc.parts["train"]
    u, i = tr.user[:6], tr.item[:6]
    one = MaskFisher(m)
    (m.pair_logits(torch.cat([u, u]), torch.cat([i, (i + 1) % tiny_enc.n_items])) ** 2).sum().backward()
    one.accumulate([torch.cat([torch.arange(6), torch.arange(6)])], 6)
    one.close()
    m.zero_grad()
    two = MaskFisher(m)
    a = m.pair_logits(u, i)
    two.next_call()
    b = m.pair_logits(u, (i + 1) % tiny_enc.n_items)
    ((a ** 2).sum() + (b ** 2).sum()).backward()
    two.accumulate([torch.arange(6), torch.arange(6)], 6)
    two.close()
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

    def run(scale, buckets):
        m.zero_grad()
        mf = MaskFisher(m, buckets)
        out = m(u, i)
        loss = ((out.rating[:4] - y[:4]) ** 2).sum() + scale * (out.logit[4:] ** 2).sum()
        loss.backward()
        mf.accumulate([torch.arange(8)], 8, bucket if buckets == 2 else None)
        mf.close()
        return mf

    one, two = run(1.0, 1), run(1.0, 2)
    for name in one.sums:
        assert torch.allclose(one.sums[name], two.sums[name])
    w = two.scores([1.0, 3.0])
    assert sum(float(v.sum()) for v in w.values()) == pytest.approx(4.0)
    scaled = run(100.0, 2).scores([1.0, 3.0])
    for name in w:
        assert torch.allclose(w[name], scaled[name]), name
    raw, raw_scaled = two.scores(), run(100.0, 2).scores()
    assert not torch.allclose(raw["rank_factors"], raw_scaled["rank_factors"])
    with pytest.raises(ValueError):
        two.scores([1.0])
