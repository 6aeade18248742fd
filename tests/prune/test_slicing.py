"""Physical removal: pruned models equal masked ones, exact counts, architectures."""
import copy

import pytest
import torch
from model_zoo import KINDS, pairs, randomised

from pakd.models import load, save
from pakd.prune import ParamCounter, mask_units, params_after, prune_units


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
def test_params_after_is_exact(kind, tiny_enc):
    from pakd.prune import prune_plan
    m = randomised(kind, tiny_enc)
    g = torch.Generator().manual_seed(5)
    keep = {}
    for grp in m.structure():
        k = torch.rand(grp.units, generator=g) > 0.4
        k[0] = True
        keep[grp.name] = k
    assert params_after(m, keep) == prune_plan(m, keep).n_params()


@pytest.mark.parametrize("kind", KINDS)
def test_param_counter_restores_exactly(kind, tiny_enc):
    m = randomised(kind, tiny_enc)
    c = ParamCounter(m)
    start = c.total
    undo = []
    for g in m.structure():
        undo.append(c.remove(g.name, 0))
    assert c.total < start
    keep = {g.name: torch.arange(g.units) != 0 for g in m.structure()}
    assert c.total == params_after(m, keep)
    for u in reversed(undo):
        c.restore(u)
    assert c.total == start == m.n_params()


@pytest.mark.parametrize("kind", KINDS)
def test_group_hidden_positions_are_what_the_unit_owns(kind, tiny_enc):
    """Masking a unit zeroes exactly the hidden positions its group declares (which the
    distillation projection follows when the unit is pruned)."""
    m = randomised(kind, tiny_enc)
    u, i = pairs(tiny_enc)
    full = m(u, i).hidden
    checked = 0
    for g in m.structure():
        if g.hidden is None:
            continue
        unit = g.units - 1          # (CIN maps sent on own no hidden position; output maps do)
        keep = torch.ones(g.units, dtype=torch.bool)
        keep[unit] = False
        h = mask_units(copy.deepcopy(m), g.name, keep)(u, i).hidden
        pos = g.hidden[unit][g.hidden[unit] >= 0]
        assert pos.numel() > 0, g.name
        assert full[:, pos].abs().sum() > 0, g.name
        assert torch.all(h[:, pos] == 0), g.name
        checked += 1
    assert checked > 0


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


def test_xdeepfm_split_half_maps_set_both_arch_entries(tiny_enc):
    m = randomised("xdeepfm", tiny_enc)          # cin_next [3, 0], cin_out [3, 4]
    keep = torch.tensor([True, False, False, True, True, False])
    p = prune_units(m, "cin.0", keep)
    assert p.arch()["cin_next"] == [1, 0] and p.arch()["cin_out"] == [2, 4]



def test_scores_of_a_group_whose_table_lost_every_column(tiny_enc, tmp_path):
    """A tower bucket left with one column whose space dimension then goes has no columns
    (a magnitude-pruned student did this on ml-latest-small): it is scored like any other
    table, its entries counting for nothing."""
    from model_zoo import tower

    from pakd.prune import Magnitude
    from pakd.prune.slicing import group_scores, prune_plan

    def group(m, name):
        return next(g for g in m.structure() if g.name == name)
    model = tower(tiny_enc)
    one = torch.zeros(group(model, "bucket_dims.0").units, dtype=torch.bool)
    one[0] = True
    model = prune_plan(model, {"bucket_dims.0": one})
    gone = torch.ones(group(model, "dims").units, dtype=torch.bool)
    gone[int(model.buckets[0].cols[0])] = False
    model = prune_plan(model, {"dims": gone})
    assert model.buckets[0].weight.shape[1] == 0
    scores = Magnitude().scores(model)
    assert all(torch.isfinite(v).all() for v in scores.values())
    ones = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    assert (group_scores(group(model, "dims"), ones) > 0).all()
    # the emptied bucket's own column group (no units) does not stop the next pruning step
    plan = {g.name: torch.ones(g.units, dtype=torch.bool) for g in model.structure()}
    plan["rows.1"][0] = False
    smaller = prune_plan(model, plan)
    assert smaller.n_params() < model.n_params()
    save(smaller, tmp_path / "s")
    assert load(tmp_path / "s")[0].buckets[0].weight.shape == (len(smaller.buckets[0].owner), 0)
