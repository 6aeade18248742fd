"""The one greedy selector: remove units in order until a budget is met.

Every use of pruning in pakd - the PAKD loop's steps, the Fisher analysis's plan and its
pruning friendliness - ranks units by an importance (`pakd.prune.importance`) and removes
them cheapest first here; the parameter count after each removal is exact (`ParamCounter`)
and every group keeps its minimum units.
"""
from __future__ import annotations

import math
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


def floor_units(groups, floor: float | dict | None) -> dict[str, int]:
    """Least units each group keeps: its own minimum, and with a share ``floor`` at least
    that share of its units (rounded up) for groups the floor applies to (not item or user
    rows, which may all go); a dict gives the counts directly."""
    out = {}
    for g in groups:
        least = g.min_units
        if isinstance(floor, dict):
            least = max(least, floor.get(g.name, 0))
        elif floor and g.floor:
            least = max(least, math.ceil(floor * g.units))
        out[g.name] = least
    return out


def select(model, order: list[tuple], *, need: float | None = None,
           max_cost: float | None = None, floor: float | dict | None = None,
           fill: bool = False) -> Selection:
    """Remove units in ``order`` ((key, group, unit, score) tuples, see `ranked`) until at
    least ``need`` parameters are gone (the unit that reaches it is removed), never letting
    the summed score exceed ``max_cost``, nor a group fall below its floor (`floor_units`).
    ``fill``: then put back, most important first, every removed unit the need can spare,
    so a size budget is used up to less than one unit."""
    groups = model.structure()
    counter = ParamCounter(model, groups)
    mins = floor_units(groups, floor)
    keep = {g.name: torch.ones(g.units, dtype=torch.bool) for g in groups}
    left = {g.name: g.units for g in groups}
    start, cost = counter.total, 0.0
    gone: list[tuple] = []
    for _, name, unit, score in order:
        if need is not None and start - counter.total >= need:
            break
        if left[name] - 1 < mins[name]:
            continue
        if max_cost is not None and cost + score > max_cost:
            break
        gone.append((name, unit, score, counter.remove(name, unit)))
        keep[name][unit] = False
        left[name] -= 1
        cost += score
    if fill and need is not None and gone:
        cost += _fill(counter, order, gone, keep, left, mins, start, need)
    return Selection(keep, cost, counter.total)


def _fill(counter, order, gone, keep, left, mins, start, need) -> float:
    """Use a budget up: the unit that crossed the need may overshoot it by far (a wide
    column); smaller units next in the order replace it when they overshoot less. Then
    every removed unit the need can spare goes back, most important first. Returns the
    change of the removed units' summed score."""
    delta = 0.0
    name, unit, score, added = gone[-1]
    over = start - counter.total - need
    counter.restore(added)
    trial = []
    for _, n2, u2, s2 in order:
        if start - counter.total >= need:
            break
        if not keep[n2][u2] or (n2, u2) == (name, unit) or left[n2] - 1 < mins[n2]:
            continue
        got = counter.remove(n2, u2)
        if start - counter.total - need >= over:      # no better than the crossing unit
            counter.restore(got)
            continue
        trial.append((n2, u2, s2, got))
        keep[n2][u2] = False
        left[n2] -= 1
    if start - counter.total >= need and start - counter.total - need < over:
        keep[name][unit] = True
        left[name] += 1
        delta += sum(t[2] for t in trial) - score
        gone = gone[:-1] + trial
    else:                                             # keep the crossing unit after all
        for n2, u2, _, got in trial:
            counter.restore(got)
            keep[n2][u2] = True
            left[n2] += 1
        counter.remove(name, unit)
    for n2, u2, s2, got in reversed(gone[:-1]):
        counter.restore(got)
        if start - counter.total >= need:
            keep[n2][u2] = True
            left[n2] += 1
            delta -= s2
        else:
            counter.remove(n2, u2)
    return delta
