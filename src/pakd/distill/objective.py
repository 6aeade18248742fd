"""The distillation objective of the training loop: what one PAKD step learns from.

One step (`Step`): a batch of observed ratings, and each distinct user of the batch scored
against the whole catalogue (one product for a dot-product student; or, as an option,
sampled negatives and per-user candidate lists of the teacher's top unseen items plus
random ones). The loss is the ground truth (rating MSE + the observed items' softmax
cross-entropy over the catalogue) plus the distillation terms the method uses (rating MSE
to the teacher, the ranking distillation - listwise KL to the teacher's distribution over
the user's unseen items, or the rank-discounted Plackett-Luce loss of the teacher's top
list - and feature MSE through a learned projection) - `Distillation.loss`.

The objective owns the temperature: it is the teacher signals' (`TeacherSignals.temperature`,
at which their probabilities were computed), so the teacher's distribution and the
student's scores can never be softened by different T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.encoding import Encoded
from ..evaluate import predict_ratings, ranking_metrics
from ..metrics import rmse
from ..models.base import RecModel
from ..prune.slicing import removed_hidden
from ..train import NegativeSampler, l2_rows, ranking_loss
from . import losses as L
from .signals import TeacherSignals


@dataclass(frozen=True)
class Losses:
    """What the student learns from: ``tasks`` names the distillation terms used (an empty
    set and ``label_loss_weight`` 1: ground truth only). ``label_ranking``: the labels'
    ranking loss - ``full`` (softmax over the catalogue) or ``softmax`` (over ``negatives``
    sampled items); ``kd_list``: the ranking distillation's distribution - ``catalogue``
    (every unseen item of each user in the batch) or ``candidates`` (``list_users`` users per
    step, each with the teacher's top items plus ``list_random`` random ones);
    ``kd_ranking``: ``kl`` (the teacher's whole distribution) or ``top`` (the teacher's
    top ``kd_top`` unseen items in order, rank-discounted: `losses.top_list_distill`)."""
    tasks: frozenset
    kd_rating_weight: float
    kd_ranking_weight: float
    kd_feature_weight: float
    label_loss_weight: float
    list_random: int
    list_users: int
    label_ranking: str = "full"
    kd_list: str = "catalogue"
    kd_ranking: str = "kl"
    kd_top: int = 50

    def catalogue(self) -> bool:
        """Does a step score its users against the whole catalogue?"""
        return self.label_ranking == "full" or ("ranking" in self.tasks
                                               and self.kd_list == "catalogue")


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


def hidden_width(model: RecModel) -> int:
    with torch.no_grad():
        zero = torch.zeros(1, dtype=torch.long)
        return model(zero, zero).hidden.shape[1]


def slice_projection(proj: nn.Linear, drop: torch.Tensor) -> nn.Linear:
    """The projection without the input columns of the hidden positions ``drop``."""
    cols = torch.ones(proj.in_features, dtype=torch.bool)
    cols[drop[drop >= 0]] = False
    new = nn.Linear(int(cols.sum()), proj.out_features)
    with torch.no_grad():
        new.weight.copy_(proj.weight[:, cols])
        new.bias.copy_(proj.bias)
    return new


def retention_balance(ndcg: float, rmse: float, teacher: dict) -> float:
    """A student's valid NDCG@10 retention minus its valid RMSE ratio, against the
    ``teacher``'s valid figures: the one number its best epoch, the labels-only MF's L2 and
    the best student are chosen by."""
    return ndcg / max(teacher["ndcg@10"], 1e-12) - rmse / teacher["rmse"]


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


class Distillation:
    """The objective: ``losses`` over the teacher's ``signals``, batches drawn by ``gen``.
    Epochs are chosen by valid RMSE and NDCG@10 against the teacher's (``teacher_valid``)."""

    def __init__(self, student: RecModel, enc: Encoded, signals: TeacherSignals,
                 losses: Losses, settings, *, gen: torch.Generator, teacher_valid: dict,
                 relevant_min_rating: float | None = None):
        self.enc, self.signals, self.losses, self.s = enc, signals, losses, settings
        self.gen, self.teacher_valid = gen, teacher_valid
        self.relevant_min_rating = relevant_min_rating
        self.sampler = NegativeSampler(enc)
        self.proj = (nn.Linear(hidden_width(student), signals.features.shape[1])
                     if "feature" in losses.tasks else None)
        self.observer = None      # a hook criterion told about each further model call

    @property
    def temperature(self) -> float:
        return self.signals.temperature

    def parameters(self):
        return list(self.proj.parameters()) if self.proj is not None else []

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.enc.parts["train"]) / self.s.batch_size)

    def batches(self, enc: Encoded, epoch: int):
        n = len(enc.parts["train"])
        perm = torch.randperm(n, generator=self.gen)
        bs = self.s.batch_size
        for b in range(self.steps_per_epoch()):
            yield sample_step(enc, perm[b * bs:(b + 1) * bs], self.sampler, self.signals,
                              self.losses, self.s.negatives, self.gen)

    def backward(self, model: RecModel, s: Step) -> np.ndarray:
        loss, gt, kd = self.loss(model, s)
        loss.backward()
        return np.array([loss.item(), gt.item(), kd.item()]) * len(s.user)

    def _next_call(self) -> None:
        if self.observer is not None and hasattr(self.observer, "next_call"):
            self.observer.next_call()

    def loss(self, student: RecModel, s: Step):
        """(loss, ground-truth part, distillation part). Rated pairs take the full forward;
        negatives and candidate lists only the cheap ranking path; with ``catalogue`` the
        batch's users are scored against every item in one product. A student built from
        its users' histories (`TowerStudent.step`) leaves the step's pairs out of them."""
        losses, signals = self.losses, self.signals
        if hasattr(student, "step"):
            student.step(torch.unique(s.user), (s.user, s.item))
        B, n_neg = len(s.user), s.neg.shape[1]
        Lc = s.cands.shape[1]
        out = student(s.user, s.item)
        lg = cat = None
        if n_neg or Lc:
            self._next_call()
            lg = student.pair_logits(torch.cat([s.user.repeat_interleave(n_neg),
                                                s.users.repeat_interleave(Lc)]),
                                     torch.cat([s.neg.flatten(), s.cands.flatten()]))
        if s.catalogue:
            self._next_call()
            cat = student.score_all(s.users)                    # [users, items]
        tasks = losses.tasks
        lse = kd_rank = None
        if "ranking" in tasks and len(s.users):
            lse, kd_rank = self._ranking_kd(s, cat, lg, B * n_neg)
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
            if s.unobserved:                     # and on unobserved pairs of the same users
                self._next_call()
                k = s.unobserved
                extra = student(s.user.repeat_interleave(k),
                                signals.unobs_items[s.idx].flatten())
                pred = torch.cat([pred, extra.rating])
                target = torch.cat([target, signals.unobs_ratings[s.idx].flatten()])
            kd = kd + losses.kd_rating_weight * L.rating_distill(pred, target)
        if kd_rank is not None:
            kd = kd + losses.kd_ranking_weight * kd_rank
        if "feature" in tasks:
            kd = kd + losses.kd_feature_weight * L.feature_distill(self.proj(out.hidden),
                                                                   signals.features[s.idx])
        loss = loss + kd
        if self.s.l2 > 0:
            loss = loss + self.s.l2 * l2_rows(student, s.user, s.item) / B
        return loss, gt, kd

    def _ranking_kd(self, s: Step, cat, lg, n_pairs: int):
        """(the catalogue log-sum-exp when computed on the way, the ranking distillation
        term): over the catalogue (the teacher's top list, or its whole distribution at
        this objective's temperature) or over the step's candidate lists (logits after the
        first ``n_pairs``, the negatives')."""
        losses, signals, T = self.losses, self.signals, self.temperature
        if losses.kd_list == "catalogue" and losses.kd_ranking == "top":
            rows, cols = signals.seen_pairs(s.users)
            return None, L.top_list_distill(cat, signals.top[s.users, :losses.kd_top],
                                            seen_rows=rows, seen_cols=cols)
        if losses.kd_list == "catalogue":
            rows, cols = signals.seen_pairs(s.users)
            return L.catalogue_terms(cat, seen_rows=rows, seen_cols=cols, temperature=T,
                                     **signals.catalogue_target(s.users))
        sl = lg[n_pairs:].view(len(s.users), s.cands.shape[1])
        tl = signals.scores[s.users.unsqueeze(1), s.cands]
        return None, L.listwise_kl(sl, tl, T)

    def examples(self, s: Step, student: RecModel):
        """For an activation-hook criterion: which example (rated pair, or user list) each
        scored pair of each model call was - (examples, count, bucket, factors).

        A catalogue pass scores every item once for all the step's users, so its item-side
        activations belong to no single example; for a dot-product score the mask
        gradient's item-side half equals its user-side half exactly (the score is bilinear
        in the two sides), so the user-side rows count twice and the item-side rows are
        left out."""
        B, n_neg, Lc = len(s.user), s.neg.shape[1], s.cands.shape[1]
        buckets = getattr(self.observer, "buckets", 1)
        examples: list = [torch.arange(B)]
        if n_neg or Lc:
            examples.append(torch.cat([torch.arange(B).repeat_interleave(n_neg),
                                       B + torch.arange(len(s.users)).repeat_interleave(Lc)]))
        factors = {}
        if s.catalogue:
            examples.append({m: B + torch.arange(len(s.users))
                             for m in student.catalogue_user_modules()})
            factors[len(examples) - 1] = 2.0
        if s.unobserved:                # the rating KD's unobserved pairs: their rated pair's
            examples.append(torch.arange(B).repeat_interleave(s.unobserved))
        bucket = torch.cat([torch.zeros(B, dtype=torch.long),               # rated pairs
                            torch.full((len(s.users),), buckets - 1)])       # user lists
        return examples, B + len(s.users), bucket, factors

    def on_pruned(self, old: RecModel, new: RecModel, keep: dict) -> None:
        """Units went from the student: the projection keeps the input columns of the
        hidden positions that survive (anew, where the positions cannot be mapped)."""
        if self.proj is None:
            return
        self.proj = slice_projection(self.proj, removed_hidden(old, keep))
        if hidden_width(new) != self.proj.in_features:
            self.proj = nn.Linear(hidden_width(new), self.proj.out_features)

    def epoch_record(self, model: RecModel, enc: Encoded, sums: np.ndarray) -> dict:
        n = len(enc.parts["train"])
        val = validate(model, enc, self.relevant_min_rating)
        tv = self.teacher_valid
        score = retention_balance(val["valid_ndcg@10"], val["valid_rmse"], tv)
        return {"loss": sums[0] / n, "label_loss": sums[1] / n, "kd_loss": sums[2] / n,
                "params": model.n_params(), **val, "score": score}

    def figures(self, record: dict, keeper) -> dict:
        """Each output its own best epoch (valid RMSE, valid NDCG@10) when the student's
        outputs share no parameters, else one epoch by NDCG and RMSE retention together."""
        if keeper.split:
            return {"rating": record["valid_rmse"], "ranking": -record["valid_ndcg@10"]}
        return {"all": -record["score"]}
