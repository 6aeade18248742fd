"""The one greedy selector: remove units in order until a budget is met.

Every use of pruning in pakd - the PAKD loop's steps, the Fisher analysis's plan and its
pruning friendliness - ranks units by an importance (`pakd.prune.importance`) and removes
them cheapest first here; the parameter count after each removal is exact (`ParamCounter`)
and every group keeps its minimum units.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .slicing import ParamCounter, unit_params


@dataclass
class Selection:
    keep: dict[str, torch.Tensor]   # group -> bool [units]
    cost: float                     # summed score of the removed units
    params_left: int


def ranked(model, scores: dict[str, torch.Tensor], per_parameter: bool) -> list[tuple]:
    """(key, group, unit, score) cheapest first: key = score, or score per parameter the
    unit owns; ties keep the model's group order, then unit order."""
    groups = model.structure()
    cnt = unit_params(model, groups) if per_parameter else None
    out = []
    for gi, g in enumerate(groups):
        s = scores[g.name].double()
        key = s / cnt[g.name].clamp(min=1) if per_parameter else s
        out += [(float(key[u]), gi, g.name, u, float(s[u])) for u in range(g.units)]
    out.sort(key=lambda t: (t[0], t[1], t[3]))
    return [(k, name, u, s) for k, _, name, u, s in out]


def select(model, order: list[tuple], *, need: float | None = None,
           max_cost: float | None = None, floor: dict[str, int] | None = None) -> Selection:
    """Remove units in ``order`` ((key, group, unit, score) tuples, see `ranked`) until at
    least ``need`` parameters are gone (the unit that reaches it is removed), never letting
    the summed score exceed ``max_cost``, nor a group fall below its ``floor`` units."""
    groups = model.structure()
    counter = ParamCounter(model, groups)
    mins = {g.name: max(g.min_units, (floor or {}).get(g.name, 0)) for g in groups}
    keep = {g.name: torch.ones(g.units, dtype=torch.bool) for g in groups}
    left = {g.name: g.units for g in groups}
    start, cost = counter.total, 0.0
    for _, name, unit, score in order:
        if need is not None and start - counter.total >= need:
            break
        if left[name] - 1 < mins[name]:
            continue
        if max_cost is not None and cost + score > max_cost:
            break
        counter.remove(name, unit)
        keep[name][unit] = False
        left[name] -= 1
        cost += score
    return Selection(keep, cost, counter.total)
