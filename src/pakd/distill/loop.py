"""The PAKD loop: distil a teacher into a student while pruning the student progressively.

One optimiser step (`Step`): a batch of observed ratings, and each distinct user of the
batch scored against the whole catalogue (one product for a dot-product student; or, as an
option, sampled negatives and per-user candidate lists of the teacher's top unseen items
plus random ones). The loss is the ground truth (rating MSE + the observed items' softmax
cross-entropy over the catalogue) plus the distillation terms the method uses (rating MSE
to the teacher, listwise KL to the teacher's distribution over the user's unseen items,
feature MSE through a learned projection) - `step_loss`.

Pruning (`Pruner`) follows the cubic schedule of Zhu & Gupta (2017) in ``steps`` steps over
the first ``until`` share of training; at each step the least important units go - by the
method's criterion (`pakd.prune.importance`), through the one greedy selector - physically
(`prune_units`), so the model really shrinks, and the optimiser is rebuilt for the new
shapes. Once the target is reached, training continues to recover and the best validation
epoch at the target size is kept (early stopping with patience); for a student whose rating
and ranking outputs share no parameters, each output keeps its own best epoch (valid RMSE,
valid NDCG@10), else one epoch by NDCG and RMSE retention together. Every method gets the
same epochs, batches and data; only the criterion and the loss change.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.encoding import Encoded
from ..evaluate import predict_ratings, ranking_metrics
from ..metrics import rmse
from ..models.base import RecModel
from ..prune import (Importance, find_group, params_after, prune_steps, prune_units, ranked,
                     select)
from ..prune.schedule import cubic
from ..runtime import log, progress
from ..errors import PakdError
from ..train import BestKeeper, NegativeSampler, has_product_ranking, l2_rows, ranking_loss
from . import losses as L
from .signals import TeacherSignals

# method: (pruning criterion, distils from the teacher?)
METHODS = {
    "fisher_kd": ("fisher", True),
    "magnitude_kd": ("magnitude", True),
    "random_kd": ("random", True),
    "fisher_ft": ("fisher", False),
    "scratch": (None, False),        # the reference's final architecture, labels only
    "final_kd": (None, True),        # the reference's final architecture, KD, never pruned
    "mf_labels": (None, False),      # a plain MF of the reference's size, labels only
    "dense_kd": (None, True),        # the unpruned student with KD (one per sweep)
}
# baselines that copy the final architecture (or size) of a pruning method's student
AFTER_REFERENCE = ("scratch", "final_kd", "mf_labels")
# the ablation: fisher_kd with one distillation term left out
ABLATIONS = {f"fisher_kd_no_{t}": t for t in ("ranking", "rating", "feature")}


@dataclass(frozen=True)
class Losses:
    """What the student learns from: ``tasks`` names the distillation terms used (an empty
    set and ``label_loss_weight`` 1: ground truth only). ``label_ranking``: the labels'
    ranking loss - ``full`` (softmax over the catalogue) or ``softmax`` (over ``negatives``
    sampled items); ``kd_list``: the ranking distillation's distribution - ``catalogue``
    (every unseen item of each user in the batch) or ``candidates`` (``list_users`` users per
    step, each with the teacher's top items plus ``list_random`` random ones)."""
    tasks: frozenset
    kd_rating_weight: float
    kd_ranking_weight: float
    kd_feature_weight: float
    label_loss_weight: float
    temperature: float
    list_random: int
    list_users: int
    label_ranking: str = "full"
    kd_list: str = "catalogue"

    def catalogue(self) -> bool:
        """Does a step score its users against the whole catalogue?"""
        return self.label_ranking == "full" or ("ranking" in self.tasks
                                               and self.kd_list == "catalogue")


@dataclass(frozen=True)
class Budget:
    """The training budget every method shares."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    l2: float
    negatives: int
    patience: int


@dataclass
class StudentResult:
    model: RecModel
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int = 0
    start_params: int = 0
    prune_log: list[dict] = field(default_factory=list)
    best_epochs: dict = field(default_factory=dict)


@dataclass
class Step:
    """One step's data: rated pairs with negatives; users with their candidate lists, or
    (``catalogue``) every distinct user of the batch, scored against every item."""
    idx: torch.Tensor      # rows of the train part
    user: torch.Tensor
    item: torch.Tensor
    rating: torch.Tensor
    neg: torch.Tensor      # [B, negatives] (no columns with the full softmax)
    users: torch.Tensor    # users with a candidate list, or the batch's distinct users
    cands: torch.Tensor    # [len(users), list length] (no columns with ``catalogue``)
    catalogue: bool = False
    inv: torch.Tensor | None = None   # with ``catalogue``: row -> position in ``users``
    unobserved: int = 0               # unobserved pairs per rated pair for the rating KD


def sample_step(enc: Encoded, idx: torch.Tensor, sampler: NegativeSampler,
                signals: TeacherSignals, losses: Losses, negatives: int,
                gen: torch.Generator) -> Step:
    tr = enc.parts["train"]
    u, i, r = tr.user[idx], tr.item[idx], tr.rating[idx]
    sampled = losses.label_ranking != "full"
    neg = sampler.sample(u, negatives if sampled else 0, gen)
    none = torch.zeros(0, 0, dtype=torch.long)
    unobs = (signals.unobs_items.shape[1] if "rating" in losses.tasks
             and signals.unobs_items is not None else 0)
    if losses.catalogue():
        users, inv = torch.unique(u, return_inverse=True)
        cands = none.view(len(users), 0)
        if "ranking" in losses.tasks and losses.kd_list == "candidates":   # labels full
            cands = torch.cat([signals.top[users], torch.randint(
                0, enc.n_items, (len(users), losses.list_random), generator=gen)], 1)
        return Step(idx, u, i, r, neg, users, cands, True, inv, unobs)
    users = torch.unique(u)
    if "ranking" in losses.tasks:
        users = users[torch.randperm(len(users), generator=gen)[:losses.list_users]]
        cands = torch.cat([signals.top[users], torch.randint(
            0, enc.n_items, (len(users), losses.list_random), generator=gen)], 1)
    else:
        users, cands = users[:0], torch.zeros(0, 1, dtype=torch.long)
    return Step(idx, u, i, r, neg, users, cands, unobserved=unobs)


def step_loss(student: RecModel, proj: nn.Module | None, s: Step, signals: TeacherSignals,
              losses: Losses, criterion: Importance | None, l2: float):
    """(loss, ground-truth part, distillation part). Rated pairs take the full forward;
    negatives and candidate lists only the cheap ranking path; with ``catalogue`` the
    batch's users are scored against every item in one product."""
    B, n_neg = len(s.user), s.neg.shape[1]
    Lc = s.cands.shape[1]
    out = student(s.user, s.item)
    lg = cat = None
    if n_neg or Lc:
        if criterion is not None:
            criterion.next_call()
        lg = student.pair_logits(torch.cat([s.user.repeat_interleave(n_neg),
                                            s.users.repeat_interleave(Lc)]),
                                 torch.cat([s.neg.flatten(), s.cands.flatten()]))
    if s.catalogue:
        if criterion is not None:
            criterion.next_call()
        cat = student.score_all(s.users)                    # [users, items]
    tasks = losses.tasks
    lse = kd_rank = None
    if "ranking" in tasks and len(s.users):
        if losses.kd_list == "catalogue":
            rows, cols = signals.seen_pairs(s.users)
            lse, kd_rank = L.catalogue_terms(cat, seen_rows=rows, seen_cols=cols,
                                             temperature=losses.temperature,
                                             **signals.catalogue_target(s.users))
        else:
            sl = lg[B * n_neg:].view(len(s.users), Lc)
            tl = signals.scores[s.users.unsqueeze(1), s.cands]
            kd_rank = L.listwise_kl(sl, tl, losses.temperature)
    if losses.label_ranking == "full":
        lse = torch.logsumexp(cat, 1) if lse is None else lse
        rank = (lse[s.inv] - out.logit).mean()
    else:
        rank = ranking_loss(out.logit, lg[:B * n_neg].view(B, n_neg), "softmax")
    gt = F.mse_loss(out.rating, s.rating) + rank
    loss = losses.label_loss_weight * gt
    kd = torch.zeros(())
    if "rating" in tasks:
        target, pred = signals.ratings[s.idx], out.rating
        if s.unobserved:                         # and on unobserved pairs of the same users
            if criterion is not None:
                criterion.next_call()
            k = s.unobserved
            extra = student(s.user.repeat_interleave(k), signals.unobs_items[s.idx].flatten())
            pred = torch.cat([pred, extra.rating])
            target = torch.cat([target, signals.unobs_ratings[s.idx].flatten()])
        kd = kd + losses.kd_rating_weight * L.rating_distill(pred, target)
    if kd_rank is not None:
        kd = kd + losses.kd_ranking_weight * kd_rank
    if "feature" in tasks:
        kd = kd + losses.kd_feature_weight * L.feature_distill(proj(out.hidden),
                                                               signals.features[s.idx])
    loss = loss + kd
    if l2 > 0:
        loss = loss + l2 * l2_rows(student, s.user, s.item) / B
    return loss, gt, kd


def observe_examples(criterion: Importance, s: Step, buckets: int, student: RecModel) -> None:
    """Tell the criterion which example (rated pair, or user list) each scored pair was.

    A catalogue pass scores every item once for all the step's users, so its item-side
    activations belong to no single example; for a dot-product score the mask gradient's
    item-side half equals its user-side half exactly (the score is bilinear in the two
    sides), so the user-side rows count twice and the item-side rows are left out."""
    B, n_neg, Lc = len(s.user), s.neg.shape[1], s.cands.shape[1]
    examples: list = [torch.arange(B)]
    if n_neg or Lc:
        examples.append(torch.cat([torch.arange(B).repeat_interleave(n_neg),
                                   B + torch.arange(len(s.users)).repeat_interleave(Lc)]))
    factors = {}
    if s.catalogue:
        examples.append({m: B + torch.arange(len(s.users))
                         for m in student.catalogue_user_modules()})
        factors[len(examples) - 1] = 2.0
    if s.unobserved:                    # the rating KD's unobserved pairs: their rated pair's
        examples.append(torch.arange(B).repeat_interleave(s.unobserved))
    bucket = torch.cat([torch.zeros(B, dtype=torch.long),               # rated pairs
                        torch.full((len(s.users),), buckets - 1)])       # user lists
    criterion.observe(examples, B + len(s.users), bucket, factors)


def slice_projection(proj: nn.Linear, owner: torch.Tensor | None,
                     keep: torch.Tensor) -> nn.Linear:
    """Keep the projection's input columns whose hidden positions survive pruning."""
    if owner is None:
        return proj
    drop = owner[~keep].flatten()
    cols = torch.ones(proj.in_features, dtype=torch.bool)
    cols[drop[drop >= 0]] = False
    new = nn.Linear(int(cols.sum()), proj.out_features)
    with torch.no_grad():
        new.weight.copy_(proj.weight[:, cols])
        new.bias.copy_(proj.bias)
    return new


def hidden_width(model: RecModel) -> int:
    with torch.no_grad():
        zero = torch.zeros(1, dtype=torch.long)
        return model(zero, zero).hidden.shape[1]


class Pruner:
    """The cubic schedule and its steps: at the planned optimiser steps, remove the units
    the criterion ranks lowest until the schedule's share of the start size is gone."""

    def __init__(self, criterion: Importance | None, ratio: float, start_params: int,
                 total_steps: int, until: float, steps: int,
                 floor: dict[str, int] | None = None):
        self.criterion = criterion
        self.floor = floor
        self.ratio = ratio if criterion is not None else 0.0
        self.start = start_params
        self.window, planned = prune_steps(total_steps, until, steps)
        self.pending = planned if self.ratio > 0 else []
        self.log: list[dict] = []

    @property
    def done(self) -> bool:
        return not self.pending

    def due(self, step: int) -> bool:
        return bool(self.pending) and step == self.pending[0]

    def prune(self, student: RecModel, proj: nn.Linear | None, step: int):
        """(student, projection) after this step's removals."""
        self.pending.pop(0)
        target = cubic(step, self.window, self.ratio)
        need = int(round(target * self.start)) - (self.start - student.n_params())
        if need <= 0:
            return student, proj
        c = self.criterion
        sel = select(student, ranked(student, c.scores(student), c.per_parameter), need=need,
                     floor=self.floor)
        before = student.n_params()
        for name, k in sel.keep.items():
            if not bool(k.all()):
                if proj is not None:   # positions in the hidden of the model as pruned so far
                    proj = slice_projection(proj, find_group(student, name).hidden, k)
                student = prune_units(student, name, k)
        student.train()
        if proj is not None and hidden_width(student) != proj.in_features:
            proj = nn.Linear(hidden_width(student), proj.out_features)   # cannot map: anew
        self.log.append({"step": step, "target_ratio": target, "params_before": before,
                         "params_after": student.n_params(),
                         "removed_ratio": 1 - student.n_params() / self.start})
        return student, proj


@torch.no_grad()
def validate(model: RecModel, enc: Encoded, relevant_min_rating: float | None = None,
             chunk: int = 512) -> dict:
    """Valid RMSE and full-catalogue valid NDCG@10 (what epochs are chosen by)."""
    model.eval()
    va = enc.parts["valid"]
    pred = predict_ratings(model, va.user, va.item)
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    out = {"valid_rmse": rmse(pred, va.rating, scale)}
    with torch.inference_mode():
        out["valid_ndcg@10"] = ranking_metrics(model, enc, "valid", ks=[10],
                                               relevant_min_rating=relevant_min_rating,
                                               chunk=chunk)["ndcg@10"]
    return out


def distill(student: RecModel, enc: Encoded, signals: TeacherSignals, *, losses: Losses,
            budget: Budget, criterion: Importance | None, ratio: float, prune_until: float,
            prune_steps: int, teacher_valid: dict, relevant_min_rating: float | None = None,
            seed: int = 0, gen: torch.Generator | None = None, quiet: bool = True,
            name: str = "", group_floor: float = 0.0) -> StudentResult:
    """Train ``student`` on ``signals`` (and the labels) for ``budget``, pruning ``ratio`` of
    its parameters by ``criterion`` (None: no pruning), each group keeping at least
    ``group_floor`` of its units. ``gen`` (default: seeded by ``seed``) draws the batches,
    negatives and candidate lists - and the random criterion's scores, when it shares the
    generator."""
    if losses.catalogue() and not has_product_ranking(student):
        raise PakdError(f"a {student.kind} student ranks pair by pair, so it cannot be scored "
                        "against the catalogue at every step: use --label-ranking softmax and "
                        "--kd-list candidates")
    gen = gen if gen is not None else torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(enc)
    n = len(enc.parts["train"])
    steps_per_epoch = math.ceil(n / budget.batch_size)
    floor = None
    if group_floor > 0 and criterion is not None and ratio > 0:
        groups = student.structure()
        floor = {g.name: max(g.min_units, math.ceil(group_floor * g.units)) for g in groups}
        least = params_after(student, {g.name: torch.arange(g.units) < floor[g.name]
                                       for g in groups})
        if least > (1 - ratio) * student.n_params():
            raise PakdError(f"--group-floor {group_floor:g} keeps at least {least:,} of the "
                            f"student's {student.n_params():,} parameters, more than pruning "
                            f"ratio {ratio:g} leaves: lower --group-floor or the ratio")
    pruner = Pruner(criterion, ratio, student.n_params(), budget.epochs * steps_per_epoch,
                    prune_until, prune_steps, floor)
    proj = None
    if "feature" in losses.tasks:
        proj = nn.Linear(hidden_width(student), signals.features.shape[1])
    opt = torch.optim.AdamW(student.param_groups(budget.weight_decay,
                                                 list(proj.parameters()) if proj else []),
                            lr=budget.lr)
    observing = criterion if criterion is not None and not pruner.done else None
    buckets = getattr(criterion, "buckets", 1)
    if observing is not None:
        observing.attach(student)
    res = StudentResult(student, start_params=pruner.start)
    keeper, step, t_train = None, 0, 0.0
    for epoch in range(budget.epochs):
        t0 = time.perf_counter()
        student.train()
        perm = torch.randperm(n, generator=gen)
        sums = np.zeros(3)
        bar = progress(range(steps_per_epoch), desc=f"{name} epoch {epoch + 1}", quiet=quiet,
                       unit="step")
        for b in bar:
            s = sample_step(enc, perm[b * budget.batch_size:(b + 1) * budget.batch_size],
                            sampler, signals, losses, budget.negatives, gen)
            loss, gt, kd = step_loss(student, proj, s, signals, losses, observing, budget.l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if observing is not None:
                observe_examples(observing, s, buckets, student)
            sums += np.array([loss.item(), gt.item(), kd.item()]) * len(s.user)
            step += 1
            if pruner.due(step):
                student, proj = pruner.prune(student, proj, step)
                opt = torch.optim.AdamW(student.param_groups(
                    budget.weight_decay, list(proj.parameters()) if proj else []), lr=budget.lr)
                if observing is not None:   # importance restarts on the new model; after the
                    if pruner.done:          # last step it is not needed any more
                        observing.detach()
                        observing = None
                    else:
                        observing.attach(student)
        t_train += time.perf_counter() - t0
        val = validate(student, enc, relevant_min_rating)
        score = (val["valid_ndcg@10"] / max(teacher_valid["ndcg@10"], 1e-12)
                 - val["valid_rmse"] / teacher_valid["rmse"])
        rec = {"epoch": epoch + 1, "loss": sums[0] / n, "label_loss": sums[1] / n,
               "kd_loss": sums[2] / n, "params": student.n_params(), **val, "score": score,
               "seconds": time.perf_counter() - t0}
        res.history.append(rec)
        if pruner.done:
            if keeper is None:   # from here on the architecture is final
                keeper = BestKeeper(student, per_task=True)
            figures = ({"rating": val["valid_rmse"], "ranking": -val["valid_ndcg@10"]}
                       if keeper.split else {"all": -score})
            if keeper.update(student, figures, epoch):
                res.best_epoch = epoch + 1
        log.debug("%s epoch %d: %s", name, epoch + 1, rec)
        if keeper is not None and keeper.stale >= budget.patience:
            break
    if observing is not None:
        observing.detach()
    res.model = (keeper.restore(student) if keeper is not None else student).eval()
    if keeper is not None:
        res.best_epochs = {k: e + 1 for k, e in keeper.epoch.items()}
    res.train_seconds = t_train
    res.prune_log = pruner.log
    return res
