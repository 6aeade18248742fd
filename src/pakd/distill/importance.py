"""Unit importance for pruning during training.

Fisher (Theis et al. 2018; Liu et al., ICML 2021): put a mask m_u = 1 on every unit's
activations; the per-example gradient of the loss with respect to m_u is
    d l_n / d m_u = sum over the unit's activations a in example n of  a * d l_n / d a,
available from the ordinary training backward pass (forward hooks keep the activations and
their gradients). Its mean square over examples is the Fisher information of the mask, and
removing the unit (m_u: 1 -> 0) costs about 1/2 F_u. Examples are the units of the loss:
one rating with its sampled negatives, or one user's candidate list. Scores are averaged over
all steps since the last pruning step (a running average), then reset.

Magnitude: mean squared weight over the entries a unit owns. Random: a seeded uniform draw.
"""
from __future__ import annotations

import torch

from ..models.base import Group, RecModel
from ..prune.slicing import group_scores, params_after


class MaskFisher:
    """Accumulates the per-example Fisher of unit masks from forward hooks.

    A step may run the model several times (say, a full forward for the rated pairs and a
    cheap ranking-only pass for the rest); call `next_call` before each run and give
    `accumulate` the example of every pair of every run, in the same order.
    """

    def __init__(self, model: RecModel):
        self.model = model
        self.groups = model.structure()
        self.sums = {g.name: torch.zeros(g.units, dtype=torch.float64) for g in self.groups}
        self.count = 0
        self._call = 0
        self._captured: list[tuple[int, str, torch.Tensor]] = []
        modules = dict(model.named_modules())
        names = {m for g in self.groups for m, _ in g.acts}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def fn(mod, inp, out):
            if out.requires_grad:
                out.retain_grad()
                self._captured.append((self._call, name, out))
        return fn

    def next_call(self) -> None:
        self._call += 1

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @torch.no_grad()
    def accumulate(self, examples: list[torch.Tensor], n_examples: int) -> None:
        """After ``loss.backward()``: examples[c][p] is the example of pair p of run c."""
        per_pair: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for call, name, out in self._captured:
            if out.grad is None:
                continue
            prod = (out * out.grad).double()
            per_pair.setdefault(name, []).append(
                (call, prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)))   # [P, D]
        for g in self.groups:
            ex = torch.zeros(n_examples, g.units, dtype=torch.float64)
            for name, idx in g.acts:
                for call, v in per_pair.get(name, []):
                    ex.index_add_(0, examples[call], v[:, idx].sum(2))
            self.sums[g.name] += (ex * ex).sum(0)
        self.count += n_examples
        self._captured.clear()
        self._call = 0

    def scores(self) -> dict[str, torch.Tensor]:
        """1/2 F_u per unit: the estimated loss increase of removing it."""
        n = max(1, self.count)
        return {k: 0.5 * v / n for k, v in self.sums.items()}


def unit_params(model: RecModel) -> dict[str, torch.Tensor]:
    ones = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    return {g.name: group_scores(g, ones) for g in model.structure()}


def magnitude_scores(model: RecModel) -> dict[str, torch.Tensor]:
    sq = {n: p.detach().double() ** 2 for n, p in model.named_parameters()}
    cnt = unit_params(model)
    return {g.name: group_scores(g, sq) / cnt[g.name].clamp(min=1) for g in model.structure()}


def random_scores(model: RecModel, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {g.name: torch.rand(g.units, generator=gen, dtype=torch.float64)
            for g in model.structure()}


def choose_units(model: RecModel, scores: dict[str, torch.Tensor], need: int,
                 per_param: bool = True) -> dict[str, torch.Tensor]:
    """Keep masks removing the lowest-scoring units until ``need`` parameters are gone
    (exact count, see `params_after`).

    With ``per_param`` the score is divided by the unit's parameter count (cost per
    parameter saved); every group keeps its minimum number of units.
    """
    cnt = unit_params(model)
    groups = {g.name: g for g in model.structure()}
    cand = []
    for name, g in groups.items():
        s = scores[name] / cnt[name].clamp(min=1) if per_param else scores[name]
        for u in range(g.units):
            cand.append((float(s[u]), name, u))
    cand.sort()
    keep = {name: torch.ones(g.units, dtype=torch.bool) for name, g in groups.items()}
    start = model.n_params()
    for _, name, u in cand:
        if start - params_after(model, keep) >= need:
            break
        if int(keep[name].sum()) - 1 < groups[name].min_units:
            continue
        keep[name][u] = False
    return keep
