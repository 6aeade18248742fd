"""Diagonal Fisher information from exact per-example gradients.

Every objective pakd analyses is a likelihood of one or two scalar outputs per example
(the rating r̂ and the ranking logit s), so an example's gradient is
    g_n = c_r,n * J_r,n + c_s,n * J_s,n,     J = d(output)/d(theta),
with c the derivative of the loss with respect to the output:
- rating, Gaussian N(r̂, sigma^2):      c_r = (r̂ - y) / sigma^2
- ranking, Bernoulli(sigmoid(s)):        c_s = sigmoid(s) - y
- ensemble: both, on the ensemble's outputs (gradients reach every member).
We compute the per-example Jacobians J once per batch and then get, without more passes,
- the empirical Fisher  sum_n g_n(y_observed)^2,
- the true Fisher       sum_n E_{y ~ model}[g_n(y)^2], by Monte-Carlo label samples
  (``mc_samples``), or in closed form (``mc_samples = 0``: E c_r^2 = 1/sigma^2,
  E c_s^2 = p(1-p)).
Per-example gradients come from one backward pass per coefficient set, with hooks: a linear
layer's per-example weight gradient is delta_n a_n^T (summed over positions when the layer
is applied at several positions of one example, e.g. CIN dimensions or AutoInt fields), so
its squares sum to (delta^2)^T (a^2) by one matrix product; an embedding table's
per-example gradient lives in the rows the example looked up, so we differentiate with
respect to the looked-up vectors, add up an example's lookups of the same row (a history
that holds the scored item, a repeated token) and scatter-add their squares into the table.
A module whose table is read through something other than a lookup (LightGCN's
propagation: an example's gradient reaches every node near its user and item) gives its
own per-example squares (``fisher_squares(indices, output gradients, weights)``). Every
other parameter of a pakd model sits in an ``nn.Linear`` or an ``nn.Embedding``, so this is
exact, and the cost stays near one forward and a few backward passes over the sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import distributed
from ..models.base import RecModel


@dataclass
class Objective:
    """Which outputs a loss reads and how strongly: the weights of the rating NLL and the
    ranking BCE terms of the objective."""
    name: str                      # rating | ranking | ensemble
    rating_nll_weight: float = 0.0
    ranking_bce_weight: float = 0.0


OBJECTIVES = {
    "rating": Objective("rating", 1.0, 0.0),
    "ranking": Objective("ranking", 0.0, 1.0),
    "ensemble": Objective("ensemble", 1.0, 1.0),
}


@dataclass
class FisherResult:
    """Diagonal Fisher per parameter name (same shapes as the parameters), summed over the
    sample, for each objective and kind ('empirical', 'true')."""
    fisher: dict[tuple[str, str], dict[str, torch.Tensor]] = field(default_factory=dict)
    n_examples: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Capture:
    """Forward hooks keeping each Linear's input/output and each Embedding's indices/output."""

    def __init__(self, model: nn.Module):
        self.linear: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.embed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.own: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # fisher_squares
        self.handles = []
        covered = set()
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                self.handles.append(m.register_forward_hook(self._keep(self.linear, name)))
                covered |= {f"{name}.weight", f"{name}.bias"}
            elif isinstance(m, nn.Embedding):
                self.handles.append(m.register_forward_hook(self._keep(self.embed, name)))
                covered.add(f"{name}.weight")
            elif hasattr(m, "fisher_squares"):
                self.handles.append(m.register_forward_hook(self._keep(self.own, name)))
                covered.add(f"{name}.weight")
        missing = [n for n, p in model.named_parameters()
                   if n not in covered and p.requires_grad]      # frozen: closed-form members
        if missing:
            raise RuntimeError(f"per-example Fisher supports Linear and Embedding parameters "
                               f"(and modules with fisher_squares) only; not {missing}")

    @staticmethod
    def _keep(store, name):
        def fn(mod, inp, out):
            if name in store:
                raise RuntimeError(f"{name} ran twice in one forward pass")
            store[name] = (inp[0], out)
        return fn

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def _accumulate(acc: dict[str, torch.Tensor], model: nn.Module, cap: _Capture,
                grads: dict[str, torch.Tensor], weight: torch.Tensor) -> None:
    """acc += sum_n weight_n * (per-example gradient)^2, from output gradients ``grads``.

    Products run in the model's precision and are summed into the float64 accumulators.
    """
    modules = dict(model.named_modules())
    for name, (a, _) in cap.linear.items():
        d = grads.get(name)
        if d is None:
            continue
        a = a.detach()
        w = weight.to(a.dtype)
        if a.dim() == 2:
            acc[f"{name}.weight"] += ((w[:, None] * d * d).T @ (a * a)).double()
            bias_g = d
        else:   # applied at several positions per example: sum over them before squaring
            a3 = a.reshape(a.shape[0], -1, a.shape[-1])
            d3 = d.reshape(d.shape[0], -1, d.shape[-1])
            g = torch.bmm(d3.transpose(1, 2), a3)                     # [B, out, in]
            acc[f"{name}.weight"] += torch.einsum("b,boi->oi", w, g * g).double()
            bias_g = d3.sum(1)
        if modules[name].bias is not None:
            acc[f"{name}.bias"] += (w[:, None] * bias_g * bias_g).sum(0).double()
    for name, (idx, out) in cap.embed.items():
        d = grads.get(name)
        if d is None:
            continue
        w = weight.to(d.dtype)
        table = acc[f"{name}.weight"]
        rows, sq = _example_rows(idx.long(), d, w, table.shape[0])
        table.index_add_(0, rows, sq.double())
        pad = modules[name].padding_idx
        if pad is not None:
            table[pad] = 0.0
    for name, (idx, out) in cap.own.items():
        d = grads.get(name)
        if d is not None:
            acc[f"{name}.weight"] += modules[name].fisher_squares(idx, d, weight).double()


def _example_rows(idx: torch.Tensor, d: torch.Tensor, w: torch.Tensor, n_rows: int):
    """(rows, weighted squared gradients) of an embedding's lookups ``idx`` with output
    gradients ``d``: one lookup per example is its gradient row as it is; several per
    example ([B, L] indices) are first added up per (example, row), so a row an example
    reads twice gets the square of its whole gradient, not the sum of two squares."""
    dim = d.shape[-1]
    if idx.dim() < 2 or idx.shape[0] != w.shape[0]:
        sq = (w.view(-1, *([1] * (d.dim() - 1))) * d * d).reshape(-1, dim)
        return idx.reshape(-1), sq
    b = idx.shape[0]
    key = (torch.arange(b)[:, None] * n_rows + idx.reshape(b, -1)).reshape(-1)
    uniq, inv = torch.unique(key, return_inverse=True)
    g = torch.zeros(len(uniq), dim, dtype=d.dtype).index_add_(0, inv, d.reshape(-1, dim))
    return uniq % n_rows, w[uniq // n_rows][:, None] * g * g


def sample_coefficients(objective: Objective, rating: torch.Tensor, logit: torch.Tensor,
                        y_rating: torch.Tensor, y_rank: torch.Tensor, has_rating: torch.Tensor,
                        sigma2: float, kind: str, mc_samples: int, gen: torch.Generator):
    """List of (coef_r, coef_s, weight) whose weighted squared gradients sum to the Fisher.

    empirical: observed labels, one term. true: ``mc_samples`` label draws from the model
    (weight 1/S each), or the closed-form expectation when mc_samples == 0.
    """
    wr, ws = objective.rating_nll_weight, objective.ranking_bce_weight
    p = torch.sigmoid(logit)
    hr = has_rating.to(rating.dtype)
    ones = torch.ones_like(rating)
    if kind == "empirical":
        return [(wr * hr * (rating - y_rating) / sigma2, ws * (p - y_rank), ones)]
    if mc_samples <= 0:
        # E[c_r c_s] = 0 (independent labels), so the closed form is a sum of two terms
        return [(wr * hr / sigma2 ** 0.5, torch.zeros_like(p), ones),
                (torch.zeros_like(p), ws * torch.sqrt(p * (1 - p)), ones)]
    terms = []
    for _ in range(mc_samples):
        yr = rating + sigma2 ** 0.5 * torch.randn(rating.shape, generator=gen, dtype=rating.dtype)
        ys = torch.bernoulli(p, generator=gen)
        terms.append((wr * hr * (rating - yr) / sigma2, ws * (p - ys), ones / mc_samples))
    return terms


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The generator of one batch's Monte-Carlo labels: the same whichever process runs it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + batch)


def diagonal_fisher(model: RecModel, user: torch.Tensor, item: torch.Tensor,
                    y_rating: torch.Tensor, y_rank: torch.Tensor, has_rating: torch.Tensor,
                    objectives: list[Objective], kinds: list[str], *, sigma2: float,
                    mc_samples: int = 1, batch: int = 512, seed: int = 0,
                    progress=None) -> dict[tuple[str, str], dict[str, torch.Tensor]]:
    """Fisher (summed over examples) for each (objective, kind).

    Examples are (user, item) pairs with a rating label (where ``has_rating``) and a
    ranking label (1 observed, 0 sampled negative). Under torchrun each process takes every
    world-th batch and the sums are all-reduced, so every process ends with the Fisher of
    the whole sample; each batch draws its Monte-Carlo labels from its own seeded
    generator, so the result does not depend on the number of processes (up to the order
    of the float64 sums).
    """
    model.eval()
    # frozen parameters (closed-form members' items^2 weights) have no gradient, so no
    # accumulator: they would only hold zeros, 8 bytes per weight per objective and kind
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    acc = {(o.name, k): {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
           for o in objectives for k in kinds}
    starts = range(0, len(user), batch)
    for b in range(distributed.rank(), len(starts), distributed.world()):
        sl = slice(starts[b], starts[b] + batch)
        gen = batch_generator(seed, b)
        cap = _Capture(model)
        try:
            out = model(user[sl], item[sl])
        finally:
            cap.close()
        targets = {n: o for store in (cap.linear, cap.embed, cap.own)
                   for n, (_, o) in store.items()}
        names = [n for n, t in targets.items() if t.requires_grad]
        r, lg = out.rating.detach().double(), out.logit.detach().double()
        terms = []
        for o in objectives:
            for k in kinds:
                for cr, cs, w in sample_coefficients(o, r, lg, y_rating[sl].double(),
                                                     y_rank[sl].double(), has_rating[sl], sigma2,
                                                     k, mc_samples, gen):
                    terms.append(((o.name, k), cr, cs, w))
        for j, (key, cr, cs, w) in enumerate(terms):
            if not (bool(cr.any()) or bool(cs.any())):
                continue
            total = (cr.to(out.rating.dtype) * out.rating).sum() + (cs.to(out.logit.dtype) * out.logit).sum()
            g = torch.autograd.grad(total, [targets[n] for n in names], retain_graph=True,
                                    allow_unused=True)
            _accumulate(acc[key], model, cap, {n: x for n, x in zip(names, g) if x is not None}, w)
        if progress is not None:
            progress.update(len(user[sl]) * distributed.world())
    if distributed.world() > 1:
        for key, per in acc.items():        # one all-reduce per (objective, kind)
            flat = distributed.sum_(torch.cat([t.reshape(-1) for t in per.values()]))
            pos = 0
            for t in per.values():
                t.copy_(flat[pos:pos + t.numel()].view_as(t))
                pos += t.numel()
    return acc
