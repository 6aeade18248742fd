"""Unit importance: one interface, every criterion an implementation.

An `Importance` gives each unit of each `Group` a score; `pakd.prune.select` removes the
lowest first - per parameter the unit owns when ``per_parameter`` (the score is then an
estimated cost of removing the unit, so small units are not favoured for being small).
Criteria that learn from training steps (the mask-gradient Fisher) are `attach`ed to the
model being trained and told about each step's examples (`observe`); the others ignore
those calls.

- `Magnitude`: sum of theta^2 over the entries a unit owns (ranked per parameter: the mean
  squared weight).
- `Random`: a seeded uniform draw (ranked as drawn).
- `MaskFisher` (Theis et al. 2018; Liu et al., ICML 2021): put a mask m_u = 1 on every
  unit's activations; the per-example gradient of the loss with respect to m_u is
  d l_n / d m_u = sum over the unit's activations a in example n of a * d l_n / d a,
  available from the ordinary training backward pass (forward hooks keep the activations
  and their gradients). Its mean square over examples is the Fisher information of the
  mask, and removing the unit (m_u: 1 -> 0) costs about 1/2 F_u. Examples are the units of
  the loss: one rating with its sampled negatives, or one user's candidate list.
  Losses on different scales (squared stars for ratings, nats for a candidate list) would
  let the larger one decide every cut, so examples can fall into buckets (rated pairs,
  candidate lists) whose Fisher is normalised to a total of one before the buckets are added
  with weights: each unit's score is its share of each bucket's sensitivity.
- `DiagonalFisher` (Optimal Brain Damage with the Fisher as Hessian, LeCun et al. 1990):
  1/2 sum F_i theta_i^2 over a unit's entries, from a per-parameter diagonal Fisher
  (`pakd.fisher.estimate`).
"""
from __future__ import annotations

import torch

from .slicing import group_scores


class Importance:
    """The interface: ``scores(model) -> {group name: float64 [units]}``. Criteria that
    learn from training steps also implement `pakd.prune.Observer` (attach, observe,
    detach)."""
    name = "importance"
    per_parameter = True

    def scores(self, model) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class Magnitude(Importance):
    name = "magnitude"

    def scores(self, model) -> dict[str, torch.Tensor]:
        sq = {n: p.detach().double() ** 2 for n, p in model.named_parameters()}
        return {g.name: group_scores(g, sq) for g in model.structure()}


class Random(Importance):
    name = "random"
    per_parameter = False

    def __init__(self, gen: torch.Generator):
        self.gen = gen

    def scores(self, model) -> dict[str, torch.Tensor]:
        return {g.name: torch.rand(g.units, generator=self.gen, dtype=torch.float64)
                for g in model.structure()}


class DiagonalFisher(Importance):
    """OBD cost 1/2 sum F theta^2 of each unit, from a per-parameter Fisher (a mean over
    examples, so costs are in units of the mean loss per example)."""
    name = "diagonal_fisher"

    def __init__(self, fisher: dict[str, torch.Tensor]):
        self.fisher = fisher

    def saliency(self, model) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {n: 0.5 * f * params[n].detach().double() ** 2 for n, f in self.fisher.items()}

    def scores(self, model) -> dict[str, torch.Tensor]:
        sal = self.saliency(model)
        return {g.name: group_scores(g, sal) for g in model.structure()}


class Taylor(Importance):
    """Second-order Taylor estimate of the change of a held-out loss when a unit is removed
    (its entries set to zero, delta = -theta): g . delta + 1/2 delta' F delta with the
    gradient ``gradient`` of the held-out loss and a diagonal Fisher ``fisher`` for the
    curvature (LeCun et al. 1990 keep only the second term, taking the gradient as zero at
    a trained optimum; on held-out data it is not zero, and the first term can be negative:
    removing an overfit unit may lower the held-out loss, which this estimate can foresee).
    Scores may therefore be negative."""
    name = "taylor"

    def __init__(self, gradient: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor]):
        self.gradient, self.fisher = gradient, fisher

    def scores(self, model) -> dict[str, torch.Tensor]:
        params = {n: p.detach().double() for n, p in model.named_parameters()}
        first = {n: -self.gradient[n].double() * params[n] for n in self.gradient}
        second = {n: 0.5 * f * params[n] ** 2 for n, f in self.fisher.items()}
        return {g.name: group_scores(g, first) + group_scores(g, second)
                for g in model.structure()}


class MaskFisher(Importance):
    """Accumulates the per-example Fisher of unit masks from forward hooks.

    A step may run the model several times (say, a full forward for the rated pairs and a
    cheap ranking-only pass for the rest); call `next_call` before each further run and give
    `observe` the example of every pair of every run, in the same order. Without
    ``balance`` the score is 1/2 F_u; with one weight per bucket it is the weighted sum of
    the unit's shares of each bucket's sensitivity.
    """
    name = "fisher"

    def __init__(self, balance: list[float] | None = None, model=None):
        self.balance = list(balance) if balance else None
        self.buckets = len(self.balance) if self.balance else 1
        self._handles: list = []
        self.model = None
        if model is not None:
            self.attach(model)

    def attach(self, model) -> None:
        self.detach()
        self.model = model
        self.groups = model.structure()
        self._sums = {g.name: torch.zeros(self.buckets, g.units, dtype=torch.float64)
                      for g in self.groups}
        self._grads = {g.name: torch.zeros(g.units, dtype=torch.float64) for g in self.groups}
        self.counts = torch.zeros(self.buckets, dtype=torch.float64)
        self._call = 0
        self._captured: list[tuple[int, str, torch.Tensor]] = []
        modules = dict(model.named_modules())
        names = {m for g in self.groups for m, _ in g.acts}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        """Sum over examples of the squared mask gradient, all buckets together."""
        return {k: v.sum(0) for k, v in self._sums.items()}

    @property
    def gradient_sums(self) -> dict[str, torch.Tensor]:
        """Sum over examples of the mask gradient itself (the first-order term of a Taylor
        estimate, `pakd.fisher.damage.mask_taylor`)."""
        return self._grads

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
        """The step runs the model once more (the objective says so before each further
        call)."""
        self._call += 1

    def observe(self, model, objective, batch) -> None:
        """After ``backward``: the objective says which example each scored pair was."""
        self.record(*objective.examples(batch, model))

    @torch.no_grad()
    def record(self, examples: list, n_examples: int, bucket: torch.Tensor | None = None,
               factors: dict[int, float] | None = None) -> None:
        """examples[c][p] is the example of pair p of run c - or, for a run whose modules
        see different rows (a catalogue pass: users on one side, items on the other), a
        dict from module name to the example of each of its rows, modules left out counting
        for no example; ``factors[c]`` scales run c's mask gradients; ``bucket[e]`` is the
        bucket of example e (default: all in bucket 0)."""
        per_pair: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for call, name, out in self._captured:
            if out.grad is None:
                continue
            prod = out * out.grad      # summed over token positions, then float64: [P, D]
            per_pair.setdefault(name, []).append(
                (call, prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1).double()))
        if bucket is None:
            bucket = torch.zeros(n_examples, dtype=torch.long)
        by_module: dict[str, dict] = {}
        for g in self.groups:
            by_call: dict[int, torch.Tensor] = {}
            by_module.setdefault(g.name, {})
            for name, idx in g.acts:       # a unit's activations may sit in several modules
                for call, v in per_pair.get(name, []):
                    part = v[:, idx].sum(2) * (factors or {}).get(call, 1.0)
                    if isinstance(examples[call], dict):
                        if name in examples[call]:
                            by_module[g.name][(call, name)] = part
                    else:
                        by_call[call] = by_call[call] + part if call in by_call else part
            ex = torch.zeros(n_examples, g.units, dtype=torch.float64)
            for call, per in by_call.items():
                _scatter_add(ex, examples[call], per)
            for (call, name), per in by_module.get(g.name, {}).items():
                _scatter_add(ex, examples[call][name], per)
            self._sums[g.name].index_add_(0, bucket, ex * ex)
            self._grads[g.name] += ex.sum(0)
        self.counts += torch.bincount(bucket, minlength=len(self.counts)).double()
        self._captured.clear()
        self._call = 0

    def scores(self, model=None) -> dict[str, torch.Tensor]:
        if self.balance is None:
            return {k: 0.5 * v / max(1, self.count) for k, v in self.sums.items()}
        # a share needs neither the 1/2 nor the example count: both cancel within a bucket
        total = sum(v.sum(1) for v in self._sums.values())                # [buckets]
        w = torch.tensor(self.balance, dtype=torch.float64) / total.clamp(min=1e-300)
        w = torch.where(total > 0, w, torch.zeros_like(w))
        return {k: (w.unsqueeze(1) * v).sum(0) for k, v in self._sums.items()}


class UnitMaskFisher(Importance):
    """The mask Fisher of models that put per-example masks on their units themselves
    (`pakd.models.tower.TowerStudent`: ``observing``, ``mask_gradients``): after each
    observed step, every unit's per-example mask gradient g (one example per user of the
    step, so a unit counts only where it is used) is squared and summed. Scores: 1/2 F
    (Fisher), or with ``taylor`` the second-order estimate of the loss change when the unit
    goes (mask 1 -> 0): -mean g + 1/2 F, which can also foresee that removing a unit helps.
    """

    def __init__(self, taylor: bool = False):
        self.taylor = taylor
        self.name = "taylor" if taylor else "fisher"
        self.model = None
        self._sq: dict[str, torch.Tensor] = {}
        self._sum: dict[str, torch.Tensor] = {}
        self.count = 0

    def attach(self, model) -> None:
        self.detach()
        self.model = model
        model.observing = True
        self._sq = {g.name: torch.zeros(g.units, dtype=torch.float64) for g in model.structure()}
        self._sum = {k: v.clone() for k, v in self._sq.items()}
        self.count = 0

    def detach(self) -> None:
        if self.model is not None:
            self.model.observing = False
        self.model = None

    @torch.no_grad()
    def observe(self, model, objective=None, batch=None) -> None:
        grads = model.mask_gradients()
        if grads is None:
            return
        for name, g in grads.items():
            g = g.double()
            self._sq[name] += (g * g).sum(0)
            self._sum[name] += g.sum(0)
        self.count += len(next(iter(grads.values())))

    def scores(self, model=None) -> dict[str, torch.Tensor]:
        n = max(1, self.count)
        if self.taylor:
            return {k: 0.5 * v / n - self._sum[k] / n for k, v in self._sq.items()}
        return {k: 0.5 * v / n for k, v in self._sq.items()}


def _scatter_add(out: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
    """out[index[p]] += values[p]. Pairs come grouped by example (sorted indices) in the
    PAKD loop, where a segment sum is several times faster than `index_add_`."""
    if len(index) and bool((index[1:] >= index[:-1]).all()):
        counts = torch.bincount(index, minlength=out.shape[0])
        out += torch.segment_reduce(values, "sum", lengths=counts, axis=0, unsafe=True)
    else:
        out.index_add_(0, index, values)


def criterion(name: str, *, model=None, gen: torch.Generator | None = None,
              balance: list[float] | None = None) -> Importance:
    """The criterion a PAKD method names - fisher, taylor, magnitude or random - for
    ``model``: models with their own per-example unit masks get `UnitMaskFisher`, others
    the activation-hook `MaskFisher` (``balance``: its loss buckets' weights)."""
    masks = model is not None and hasattr(model, "mask_gradients")
    if name == "fisher":
        return UnitMaskFisher() if masks else MaskFisher(balance)
    if name == "taylor":
        if not masks:
            raise ValueError(f"the taylor criterion needs a student with unit masks "
                             f"(tower_student), not {model.kind if model is not None else None}")
        return UnitMaskFisher(taylor=True)
    if name == "magnitude":
        return Magnitude()
    if name == "random":
        return Random(gen if gen is not None else torch.Generator().manual_seed(0))
    raise ValueError(f"unknown pruning criterion {name!r}")
