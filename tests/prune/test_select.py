"""The one greedy selector: budgets, minimum units, cost caps, tie order."""
import pytest
import torch

from pakd.models import build
from pakd.prune import params_after, ranked, select, unit_params


def student(enc):
    return build("lightweight_model", enc.schema, {"factors": 6, "rank_factors": 3,
                                                   "hidden": [4]}, tables=enc.tables)


def test_need_is_met_exactly_and_minimum_units_are_kept(tiny_enc):
    m = student(tiny_enc)
    cnt = unit_params(m)
    scores = {g.name: torch.arange(g.units, dtype=torch.float64) for g in m.structure()}
    sel = select(m, ranked(m, scores, per_parameter=False), need=10**9)
    for g in m.structure():
        assert int(sel.keep[g.name].sum()) == g.min_units
    sel = select(m, ranked(m, scores, per_parameter=False), need=1)
    removed = sum(int(cnt[n][~k].sum()) for n, k in sel.keep.items())
    assert 1 <= removed and sum(int((~k).sum()) for k in sel.keep.values()) == 1
    assert sel.params_left == params_after(m, sel.keep)


def test_selector_stops_at_the_first_unit_that_reaches_the_need(tiny_enc):
    m = student(tiny_enc)
    scores = {g.name: torch.rand(g.units, dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(1))
              for g in m.structure()}
    need = m.n_params() // 3
    sel = select(m, ranked(m, scores, per_parameter=True), need=need)
    assert m.n_params() - sel.params_left >= need
    # putting back the last unit removed falls short of the need
    last = [t for t in ranked(m, scores, True) if not sel.keep[t[1]][t[2]]][-1]
    back = {n: v.clone() for n, v in sel.keep.items()}
    back[last[1]][last[2]] = True
    assert m.n_params() - params_after(m, back) < need


def test_max_cost_never_exceeded(tiny_enc):
    m = student(tiny_enc)
    scores = {g.name: torch.full((g.units,), 1.0, dtype=torch.float64) for g in m.structure()}
    sel = select(m, ranked(m, scores, per_parameter=False), max_cost=2.5)
    assert sel.cost == 2.0
    assert sum(int((~k).sum()) for k in sel.keep.values()) == 2


def test_ranked_per_parameter_and_ties_in_group_order(tiny_enc):
    m = student(tiny_enc)
    cnt = unit_params(m)
    scores = {g.name: torch.ones(g.units, dtype=torch.float64) * cnt[g.name] for g in m.structure()}
    order = ranked(m, scores, per_parameter=True)
    assert all(k == pytest.approx(1.0) for k, *_ in order)       # all tie per parameter
    names = [g.name for g in m.structure()]
    seen = [names.index(name) for _, name, _, _ in order]
    assert seen == sorted(seen)


def test_floor_keeps_that_many_units_of_each_group_and_takes_the_rest_elsewhere(tiny_enc):
    """``floor`` (group -> units, `--group-floor`): a group the scores would empty keeps its
    floor, and the need is met from the other groups."""
    m = student(tiny_enc)
    groups = {g.name: g for g in m.structure()}
    scores = {n: torch.full((g.units,), 100.0, dtype=torch.float64) for n, g in groups.items()}
    scores["factors"] = torch.zeros(groups["factors"].units, dtype=torch.float64)  # cheapest
    per_unit = unit_params(m)["factors"]
    need = int(per_unit[1:].sum()) + 1          # every factor but one, and then some
    free = select(m, ranked(m, scores, per_parameter=False), need=need)
    assert int(free.keep["factors"].sum()) == groups["factors"].min_units
    held = select(m, ranked(m, scores, per_parameter=False), need=need, floor={"factors": 3})
    assert int(held.keep["factors"].sum()) == 3
    assert m.n_params() - held.params_left >= need
    assert any(not bool(k.all()) for n, k in held.keep.items() if n != "factors")
