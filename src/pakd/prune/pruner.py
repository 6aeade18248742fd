"""Pruning while training: `Pruner` removes the units an importance ranks lowest, on the
cubic schedule, down to a parameter budget.

The training loop runs it through its `pakd.train.Pruning` callback, which lets an
observing criterion watch each step (`Observer`: the mask Fisher), calls `Pruner.step` at
the planned steps and hands the smaller model to the loop. The last step fills the budget:
removed units that fit are put back, most important first, so a budget is used up to less
than one unit.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..errors import PakdError
from .schedule import cubic, prune_steps
from .select import Selection, floor_units, ranked, select
from .slicing import params_after, prune_plan


@runtime_checkable
class Observer(Protocol):
    """A criterion that learns from training steps."""

    def attach(self, model) -> None: ...
    def detach(self) -> None: ...
    def observe(self, model, objective, batch) -> None: ...


class Pruner:
    """``importance`` ranks units; the model goes from ``start`` parameters down to
    ``target`` along the cubic schedule over the first ``until`` share of ``total_steps``,
    in ``steps`` steps; every group keeps its floor (``floor``: a share, `floor_units`)."""

    def __init__(self, importance, *, start: int, target: int, total_steps: int,
                 until: float, steps: int, floor: float = 0.0):
        self.importance, self.start, self.target, self.floor = importance, start, target, floor
        self.ratio = 1.0 - target / start if start else 0.0
        self.window, planned = prune_steps(total_steps, until, steps)
        self.pending = planned if target < start else []
        self.log: list[dict] = []
        self.least: dict[str, int] | None = None   # units per group, from the start model

    def least_params(self, model) -> int:
        """Parameters ``model`` keeps at the least: every group its minimum units and its
        floor (a share of the units it starts with)."""
        groups = model.structure()
        self.least = floor_units(groups, self.floor)
        return params_after(model, {g.name: torch.arange(g.units) < self.least[g.name]
                                    for g in groups})

    def check(self, model) -> None:
        """Refuse, before any training, a budget the model cannot reach."""
        least = self.least_params(model)
        if least > self.target:
            raise PakdError(
                f"a budget of {self.target:,} parameters is below the {least:,} the student "
                f"keeps with one unit per group and the group floor {self.floor:g}: give a "
                "larger budget, a lower --group-floor, or a narrower student")

    @property
    def done(self) -> bool:
        return not self.pending

    def due(self, step: int) -> bool:
        return bool(self.pending) and step == self.pending[0]

    def step(self, model, step: int) -> tuple[object, Selection | None]:
        """(the model after this step's removals, the selection - None if nothing went)."""
        self.pending.pop(0)
        last = not self.pending
        share = cubic(step, self.window, self.ratio)
        goal = self.target if last else int(round(self.start * (1 - share)))
        need = model.n_params() - goal
        if need <= 0:
            return model, None
        if self.least is None:
            self.least = floor_units(model.structure(), self.floor)
        imp = self.importance
        sel = select(model, ranked(model, imp.scores(model), imp.per_parameter), need=need,
                     floor=self.least, fill=last)
        before = model.n_params()
        model = prune_plan(model, sel.keep)
        self.log.append({"step": step, "target_ratio": share, "params_before": before,
                         "params_after": model.n_params(),
                         "removed_ratio": 1 - model.n_params() / self.start})
        return model, sel
