"""Models: shapes, catalogue scoring, exact structured pruning, save/load."""
import copy

import pytest
import torch

from pakd.models import build, load, save
from pakd.models.ensemble import Ensemble
from pakd.prune import mask_units, prune_units

KINDS = {
    "svd": {"factors": 6, "rank_factors": 5},
    "xdeepfm": {"embed_dim": 4, "cin_layers": [6, 4], "dnn": [8, 5]},
    "autoint": {"embed_dim": 4, "layers": 2, "heads": 3, "head_dim": 3, "dnn": [6]},
    "lightweight_model": {"factors": 5, "rank_factors": 3, "hidden": [7, 4]},
}


def randomised(kind, enc, seed=0):
    torch.manual_seed(seed)
    m = build(kind, enc.schema, KINDS[kind], tables=enc.tables, rating_mean=3.0).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


def pairs(enc, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, enc.n_users, (n,), generator=g),
            torch.randint(0, enc.n_items, (n,), generator=g))


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_score_all_agree(kind, tiny_enc):
    m = randomised(kind, tiny_enc)
    u, i = pairs(tiny_enc)
    out = m(u, i)
    assert out.rating.shape == out.logit.shape == (40,)
    assert out.hidden.shape[0] == 40
    s = m.score_all(torch.arange(tiny_enc.n_users))
    assert s.shape == (tiny_enc.n_users, tiny_enc.n_items)
    assert torch.allclose(s[u, i], out.logit.to(s.dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_pruned_model_equals_masked_original(kind, tiny_enc):
    """Slicing units out gives exactly the outputs of zeroing them in the full model."""
    m = randomised(kind, tiny_enc)
    u, i = pairs(tiny_enc)
    groups = m.structure()
    assert groups, kind
    g = torch.Generator().manual_seed(3)
    for grp in groups:
        keep = torch.rand(grp.units, generator=g) > 0.5
        keep[torch.randint(0, grp.units, (1,), generator=g)] = True
        if keep.all():
            keep[(torch.nonzero(keep)[-1])] = False if grp.units > 1 else True
        masked = mask_units(copy.deepcopy(m), grp.name, keep)
        pruned = prune_units(m, grp.name, keep).eval()
        a, b = masked(u, i), pruned(u, i)
        assert torch.allclose(a.rating, b.rating, rtol=1e-9, atol=1e-9), grp.name
        assert torch.allclose(a.logit, b.logit, rtol=1e-9, atol=1e-9), grp.name
        if not keep.all():
            assert pruned.n_params() < m.n_params(), grp.name
            # the unmasked model really differs, so the comparison above is not vacuous
            full = m(u, i)
            assert not (torch.allclose(full.logit, b.logit)
                        and torch.allclose(full.rating, b.rating)), grp.name


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_weights_only(kind, tiny_enc, tmp_path):
    m = randomised(kind, tiny_enc).float()
    save(m, tmp_path / "model", meta={"note": "x"})
    assert (tmp_path / "model.safetensors").is_file()
    back, cfg = load(tmp_path / "model")
    assert cfg["kind"] == kind and cfg["note"] == "x"
    u, i = pairs(tiny_enc)
    assert torch.equal(back(u, i).rating, m(u, i).rating)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_pruned_model_saves_smaller(tiny_enc, tmp_path):
    m = randomised("xdeepfm", tiny_enc).float()
    keep = torch.tensor([True, False, True, False])
    small = prune_units(m, "embedding", keep)
    save(m, tmp_path / "big")
    save(small, tmp_path / "small")
    assert small.arch()["embed_dim"] == 2
    assert (tmp_path / "small.safetensors").stat().st_size < (tmp_path / "big.safetensors").stat().st_size
    back, _ = load(tmp_path / "small")
    u, i = pairs(tiny_enc)
    assert torch.allclose(back(u, i).logit, small(u, i).logit)


def test_autoint_head_pruning_changes_arch(tiny_enc):
    m = randomised("autoint", tiny_enc)
    p = prune_units(m, "att.0", torch.tensor([True, False, True]))
    assert p.arch()["heads"] == [2, 3]
    p = prune_units(p, "att.1", torch.tensor([False, False, True]))
    assert p.arch()["heads"] == [2, 1]


def test_ensemble_combines_per_task(tiny_enc):
    members = {k: randomised(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "xdeepfm", "autoint"])}
    ens = Ensemble(members, {"svd": 0.4, "xdeepfm": 0.4, "autoint": 0.2},
                   {"svd": "ranking", "xdeepfm": "rating", "autoint": "balance"}).double()
    assert ens.rating_weights == pytest.approx({"xdeepfm": 2 / 3, "autoint": 1 / 3})
    assert ens.ranking_weights == pytest.approx({"svd": 2 / 3, "autoint": 1 / 3})
    ens.calibrate(tiny_enc.n_users, sample=10)
    u, i = pairs(tiny_enc)
    out = ens(u, i)
    want_r = 2 / 3 * members["xdeepfm"](u, i).rating + 1 / 3 * members["autoint"](u, i).rating
    assert torch.allclose(out.rating, want_r)
    z = lambda n, k: (members[n](u, i).logit - ens.logit_mean[k]) / ens.logit_std[k]  # noqa: E731
    assert torch.allclose(out.logit, 2 / 3 * z("svd", 0) + 1 / 3 * z("autoint", 2))
    s = ens.score_all(torch.arange(tiny_enc.n_users))
    assert torch.allclose(s[u, i], out.logit.to(s.dtype), rtol=1e-5, atol=1e-6)
    assert ens.n_params() == sum(m.n_params() for m in members.values())


@pytest.mark.parametrize("kind", KINDS)
def test_params_after_is_exact(kind, tiny_enc):
    from pakd.prune import params_after, prune_plan
    m = randomised(kind, tiny_enc)
    g = torch.Generator().manual_seed(5)
    keep = {}
    for grp in m.structure():
        k = torch.rand(grp.units, generator=g) > 0.4
        k[0] = True
        keep[grp.name] = k
    assert params_after(m, keep) == prune_plan(m, keep).n_params()
