"""Unit importance for pruning during training.

Fisher (Theis et al. 2018; Liu et al., ICML 2021): put a mask m_u = 1 on every unit's
activations; the per-example gradient of the loss with respect to m_u is
    d l_n / d m_u = sum over the unit's activations a in example n of  a * d l_n / d a,
available from the ordinary training backward pass (forward hooks keep the activations and
their gradients). Its mean square over examples is the Fisher information of the mask, and
removing the unit (m_u: 1 -> 0) costs about 1/2 F_u. Examples are the units of the loss:
one rating with its sampled negatives, or one user's candidate list. Scores are averaged over
all steps since the last pruning step (a running average), then reset.

Losses on different scales (squared stars for ratings, nats for a candidate list) would let
the larger one decide every cut, so examples can fall into buckets (rated pairs, candidate
lists) whose Fisher is normalised to a total of one before the buckets are added with
weights: each unit's score is its share of each bucket's sensitivity.

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

    def __init__(self, model: RecModel, buckets: int = 1):
        self.model = model
        self.groups = model.structure()
        self._sums = {g.name: torch.zeros(buckets, g.units, dtype=torch.float64) for g in self.groups}
        self.counts = torch.zeros(buckets, dtype=torch.float64)
        self._call = 0
        self._captured: list[tuple[int, str, torch.Tensor]] = []
        modules = dict(model.named_modules())
        names = {m for g in self.groups for m, _ in g.acts}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        """Sum over examples of the squared mask gradient, all buckets together."""
        return {k: v.sum(0) for k, v in self._sums.items()}

    @property
    def count(self) -> int:
        return int(self.counts.sum())

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
    def accumulate(self, examples: list[torch.Tensor], n_examples: int,
                   bucket: torch.Tensor | None = None) -> None:
        """After ``loss.backward()``: examples[c][p] is the example of pair p of run c;
        ``bucket[e]`` the bucket of example e (default: all in bucket 0)."""
        per_pair: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for call, name, out in self._captured:
            if out.grad is None:
                continue
            prod = (out * out.grad).double()
            per_pair.setdefault(name, []).append(
                (call, prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)))   # [P, D]
        if bucket is None:
            bucket = torch.zeros(n_examples, dtype=torch.long)
        for g in self.groups:
            ex = torch.zeros(n_examples, g.units, dtype=torch.float64)
            for name, idx in g.acts:
                for call, v in per_pair.get(name, []):
                    ex.index_add_(0, examples[call], v[:, idx].sum(2))
            self._sums[g.name].index_add_(0, bucket, ex * ex)
        self.counts += torch.bincount(bucket, minlength=len(self.counts)).double()
        self._captured.clear()
        self._call = 0

    def scores(self, weights: list[float] | None = None) -> dict[str, torch.Tensor]:
        """Without ``weights``: 1/2 F_u per unit, the estimated loss increase of removing it.
        With one weight per bucket: sum over buckets of weight x the unit's share of that
        bucket's total 1/2 F (empty buckets count zero)."""
        if weights is None:
            return {k: 0.5 * v / max(1, self.count) for k, v in self.sums.items()}
        if len(weights) != len(self.counts):
            raise ValueError(f"{len(self.counts)} buckets need as many weights, got {len(weights)}")
        # a share needs neither the 1/2 nor the example count: both cancel within a bucket
        total = sum(v.sum(1) for v in self._sums.values())                # [buckets]
        w = torch.tensor(weights, dtype=torch.float64) / total.clamp(min=1e-300)
        w = torch.where(total > 0, w, torch.zeros_like(w))
        return {k: (w.unsqueeze(1) * v).sum(0) for k, v in self._sums.items()}


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
