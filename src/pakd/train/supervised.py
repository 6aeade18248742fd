"""Supervised training of the teachers: the multi-task loss, negatives, and `fit`.

Loss per step = rating_loss_weight * MSE(rating, observed rating)
              + ranking_loss_weight * ranking loss (observed item vs sampled unobserved items,
                or ``full``: softmax cross-entropy over the whole catalogue)
              + l2 * squared norm of the embedding rows the step touched.
The full softmax needs a model whose catalogue scores are one differentiable product
(`RecModel.pair_logits` overridden: svd, the students); each distinct user of a batch is
scored against every item once, so a step costs one [users, items] product. Negatives are
drawn with a fresh seeded generator per epoch (items the user rated in train are redrawn
once), so a resumed run repeats the same epochs. Validation uses fixed sampled negatives;
``monitor`` picks the figure early stopping watches (the weighted loss of both tasks, the
RMSE or the ranking loss; ``per_task``: the valid RMSE for the rating output and the
full-catalogue valid NDCG@10 for the ranking one).

`Supervised` is this loss as an objective of the one training loop (`pakd.train.Trainer`);
`fit` trains a teacher with it and the usual callbacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..data.encoding import Encoded
from ..errors import PakdError
from ..models.base import RecModel
from ..runtime import log
from .callbacks import AllReduce, BestEpoch, Checkpoint, Progress
from .trainer import Callback, FitResult, Trainer


_MONITOR = {"loss": "valid_loss", "rmse": "valid_rmse", "rank_loss": "valid_rank_loss"}


class NegativeSampler:
    """Draws negatives for sampled ranking losses.

    uniform: every item alike. ``popularity``: in proportion to each item's train count plus
    one. ``candidates`` ([users, N], a retrieval stage's top-N per user): a ``share`` of the
    draws comes uniformly from the user's N candidates - hard negatives, the items a
    re-ranker must order - and the rest by popularity. Items the user rated in train are
    redrawn once. ``log_q(user, item)`` is the log probability of drawing ``item`` for
    ``user`` (the sampled softmax's correction); None for uniform draws, where it would be
    a constant.
    """

    def __init__(self, enc: Encoded, popularity: bool = False,
                 candidates: torch.Tensor | None = None, share: float = 0.5):
        tr = enc.parts["train"]
        self.n_items = enc.n_items
        self.keys = torch.sort(tr.user * enc.n_items + tr.item).values
        self.q = None
        if popularity or candidates is not None:
            self.q = torch.bincount(tr.item, minlength=enc.n_items).double() + 1.0
            self.q /= self.q.sum()
        self.cands = candidates
        self.share = share if candidates is not None else 0.0
        if candidates is not None:
            n_users, n = candidates.shape
            keys = torch.arange(n_users).unsqueeze(1) * enc.n_items + candidates
            self.cand_keys = torch.sort(keys.flatten()).values

    def log_q(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor | None:
        """log P(draw ``item`` for ``user``), elementwise; None for uniform draws."""
        if self.q is None:
            return None
        q = (1.0 - self.share) * self.q[item]
        if self.cands is not None:
            k = user * self.n_items + item
            pos = torch.searchsorted(self.cand_keys, k).clamp(max=len(self.cand_keys) - 1)
            q = q + (self.cand_keys[pos] == k).double() * (self.share / self.cands.shape[1])
        return q.log().float()

    def is_seen(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        k = user * self.n_items + item
        pos = torch.searchsorted(self.keys, k).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == k

    def _draw(self, user: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = len(user)
        if self.q is None:
            return torch.randint(0, self.n_items, (n,), generator=gen)
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        out = torch.multinomial(self.q, n, replacement=True, generator=gen)
        if self.cands is not None and self.share > 0:
            hard = torch.rand(n, generator=gen) < self.share
            col = torch.randint(0, self.cands.shape[1], (int(hard.sum()),), generator=gen)
            out[hard] = self.cands[user[hard], col]
        return out

    def sample(self, user: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """[len(user), n] item indices."""
        uu = user.repeat_interleave(n)
        neg = self._draw(uu, gen)
        seen = self.is_seen(uu, neg)
        if seen.any():
            neg[seen] = self._draw(uu[seen], gen)
        return neg.view(len(user), n)


def has_product_ranking(model: RecModel) -> bool:
    """Does the model rank through a path of its own (a dot product: `score_all` is one
    differentiable product)?"""
    return type(model).pair_logits is not RecModel.pair_logits


def catalogue_lse(model: RecModel, user: torch.Tensor) -> torch.Tensor:
    """log sum over every item of exp(logit), per row of ``user``: each distinct user is
    scored against the catalogue once."""
    uu, inv = torch.unique(user, return_inverse=True)
    return torch.logsumexp(model.score_all(uu), 1)[inv]


def full_softmax_loss(model: RecModel, user: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the observed items (logits ``pos``) against the catalogue."""
    return (catalogue_lse(model, user) - pos).mean()


def ranking_loss(pos: torch.Tensor, neg: torch.Tensor, kind: str,
                 log_q: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """pos [B], neg [B, n] logits (sampled losses; ``full`` is `full_softmax_loss`).
    ``log_q`` (log sampling probabilities of the positives and of the negatives): the
    sampled softmax's correction (Bengio & Senecal 2008; Jean et al. 2015), every logit
    minus log Q of its item, so popularity-drawn negatives do not bias the model against
    popular items. It changes nothing for uniform draws (a constant shift)."""
    if log_q is not None and kind == "softmax":
        pos, neg = pos - log_q[0], neg - log_q[1]
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="sum")
                + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="sum")
                ) / (pos.numel() + neg.numel())
    if kind == "bpr":
        return -F.logsigmoid(pos[:, None] - neg).mean()
    if kind == "softmax":
        logits = torch.cat([pos[:, None], neg], 1)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))
    raise ValueError(kind)


def l2_rows(model: RecModel, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """Squared norm of the embedding rows a batch touches (indexing the weights directly,
    so hooks on the embedding modules see only the forward pass)."""
    return sum((m.weight[idx.long()] ** 2).sum() for m, idx in model.lookup_rows(user, item))


@dataclass(frozen=True)
class Loss:
    """The training loss of `fit`: which ranking loss, how the tasks weigh, row L2."""
    ranking_loss: str
    rating_loss_weight: float
    ranking_loss_weight: float
    l2: float = 0.0
    sampler: NegativeSampler | None = None   # its log_q: the sampled softmax's correction


def _log_q(loss: Loss, user: torch.Tensor, item: torch.Tensor, neg: torch.Tensor):
    if loss.sampler is None or loss.sampler.q is None:
        return None
    return (loss.sampler.log_q(user, item),
            loss.sampler.log_q(user.unsqueeze(1).expand_as(neg), neg))


def step_losses(model: RecModel, u, i, r, neg, loss: Loss):
    """(total, rating MSE, ranking loss) of one batch; neg is [B, n].

    A model with a ranking path of its own (`RecModel.pair_logits` overridden: MF-style
    models) scores the negatives through it alone - their ratings and hidden features are
    never read; other models run rated pairs and negatives in one forward."""
    n = neg.shape[1]
    b = len(u)
    if loss.ranking_loss == "full":
        out = model(u, i)
        rating, pos_logit = out.rating, out.logit
        rank = full_softmax_loss(model, u, pos_logit)
    elif has_product_ranking(model):
        out = model(u, i)
        neg_logit = model.pair_logits(u.repeat_interleave(n), neg.flatten()).view(b, n)
        rating, pos_logit = out.rating, out.logit
        rank = ranking_loss(pos_logit, neg_logit, loss.ranking_loss, _log_q(loss, u, i, neg))
    else:
        out = model(torch.cat([u, u.repeat_interleave(n)]), torch.cat([i, neg.flatten()]))
        rating, pos_logit, neg_logit = out.rating[:b], out.logit[:b], out.logit[b:].view(b, n)
        rank = ranking_loss(pos_logit, neg_logit, loss.ranking_loss, _log_q(loss, u, i, neg))
    mse = F.mse_loss(rating, r)
    total = loss.rating_loss_weight * mse + loss.ranking_loss_weight * rank
    if loss.l2 > 0:
        reg = l2_rows(model, u, i)
        total = total + loss.l2 * reg / b
    return total, mse, rank


def backward_step(model: RecModel, u, i, r, neg, loss: Loss, micro_batch: int,
                  scale: float = 1.0) -> np.ndarray:
    """Backpropagate one step's loss, in chunks of ``micro_batch`` ratings when set: each
    chunk's loss weighted by its share of the batch, so the step's gradient is the same
    (up to summation order) while the intermediates stay small enough for the CPU's caches
    (xDeepFM trains ~30% faster on 2 cores). ``scale``: this process's share of the global
    batch when several train together (`pakd.distributed`). Returns (loss, MSE, ranking
    loss) of the step, times ``scale``."""
    b = len(u)
    size = micro_batch if 0 < micro_batch < b else b
    out = np.zeros(3)
    for s in range(0, b, size):
        sl = slice(s, s + size)
        share = len(u[sl]) / b * scale
        total, mse, rank = step_losses(model, u[sl], i[sl], r[sl], neg[sl], loss)
        (total * share).backward()
        out += share * np.array([total.item(), mse.item(), rank.item()])
    return out


@torch.no_grad()
def validation_loss(model: RecModel, enc: Encoded, loss: Loss, negs: torch.Tensor,
                    ndcg: bool = False, relevant_min_rating: float | None = None) -> dict:
    """Valid loss, RMSE and ranking loss (and the full-catalogue NDCG@10 with ``ndcg``)."""
    model.eval()
    va = enc.parts["valid"]
    mse_s = rank_s = 0.0
    bs = 8192
    no_l2 = Loss(loss.ranking_loss, loss.rating_loss_weight, loss.ranking_loss_weight, 0.0,
                 loss.sampler)
    for s in range(0, len(va), bs):
        u, i, r = va.user[s:s + bs], va.item[s:s + bs], va.rating[s:s + bs]
        _, mse, rank = step_losses(model, u, i, r, negs[s:s + bs], no_l2)
        mse_s += float(mse) * len(u)
        rank_s += float(rank) * len(u)
    n = max(1, len(va))
    mse, rank = mse_s / n, rank_s / n
    tot = loss.rating_loss_weight * mse + loss.ranking_loss_weight * rank
    out = {"valid_loss": tot, "valid_rmse": float(np.sqrt(mse)), "valid_rank_loss": rank}
    if ndcg:
        from ..evaluate import ranking_metrics
        out["valid_ndcg@10"] = ranking_metrics(model, enc, "valid", ks=[10],
                                               relevant_min_rating=relevant_min_rating,
                                               chunk=512)["ndcg@10"]
    return out


class Supervised:
    """The teachers' objective: rated pairs with sampled (or all) negatives, the weighted
    rating and ranking losses, and the valid figures epochs are chosen by."""

    def __init__(self, enc: Encoded, settings, *, sampler: NegativeSampler, seed: int,
                 relevant_min_rating: float | None = None, per_task: bool = False):
        self.enc, self.s, self.seed = enc, settings, seed
        self.n_neg = 0 if settings.ranking_loss == "full" else settings.negatives
        self.loss = Loss(settings.ranking_loss, settings.rating_loss_weight,
                         settings.ranking_loss_weight, settings.l2, sampler)
        self.sampler = sampler
        self.val_negs = sampler.sample(enc.parts["valid"].user, self.n_neg,
                                       torch.Generator().manual_seed(seed + 7919))
        self.relevant_min_rating, self.per_task = relevant_min_rating, per_task

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.enc.parts["train"]) / self.s.batch_size)

    def batches(self, enc: Encoded, epoch: int):
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        tr = enc.parts["train"]
        perm = torch.randperm(len(tr), generator=gen)
        for s in range(0, len(tr), self.s.batch_size):
            idx = perm[s:s + self.s.batch_size]
            u = tr.user[idx]
            yield u, tr.item[idx], tr.rating[idx], self.sampler.sample(u, self.n_neg, gen)

    def backward(self, model: RecModel, batch) -> np.ndarray:
        """This process's share of the step (all of it in one process), backpropagated in
        micro-batches; (loss, MSE, ranking loss) times the batch size."""
        u, i, r, neg = batch
        mine = distributed.shard(len(u))
        return backward_step(model, u[mine], i[mine], r[mine], neg[mine], self.loss,
                             self.s.micro_batch, (mine.stop - mine.start) / len(u)) * len(u)

    def epoch_record(self, model: RecModel, enc: Encoded, sums: np.ndarray) -> dict:
        n = len(enc.parts["train"])
        val = validation_loss(model, enc, self.loss, self.val_negs, ndcg=self.per_task,
                              relevant_min_rating=self.relevant_min_rating)
        return {"train_loss": float(sums[0] / n), "train_rmse": float(np.sqrt(sums[1] / n)),
                "train_rank_loss": float(sums[2] / n), **val}

    def figures(self, record: dict, keeper) -> dict:
        """What the best epoch minimises: per task (RMSE, minus NDCG@10) when the model's
        outputs share no parameters, else the monitored figure."""
        if keeper.split:
            return {"rating": record["valid_rmse"], "ranking": -record["valid_ndcg@10"]}
        return {"all": record[_MONITOR.get(self.s.monitor, "valid_loss")]}


class _LogEpoch(Callback):
    def __init__(self, best: BestEpoch):
        self.best = best

    def on_epoch_end(self, trainer: Trainer, r: dict) -> None:
        log.info("%s epoch %d: train loss %.4f (rmse %.4f) | valid loss %.4f rmse %.4f rank %.4f"
                 " | %.1fs%s", trainer.name, r["epoch"], r["train_loss"], r["train_rmse"],
                 r["valid_loss"], r["valid_rmse"], r["valid_rank_loss"], r["seconds"],
                 " *" if self.best.improved else "")


def fit(model: RecModel, enc: Encoded, settings, *, candidates: torch.Tensor | None = None,
        seed: int = 0, name: str = "", checkpoint: Path | None = None,
        state: Path | None = None, resume: bool = False, quiet: bool = False,
        meta: dict | None = None, relevant_min_rating: float | None = None) -> FitResult:
    """Train a teacher in place with its `FitSettings` ``settings``; it ends holding the best
    validation weights.

    ``checkpoint``: stem the best weights are saved to at every improvement; ``state``: the
    resumable training state written after every epoch (read back with ``resume``).
    ``candidates`` ([users, <= retrieval_n]): the retrieval stage's top-N per user, the hard
    negatives of ``negative_sampling`` retrieval (`pakd.scores.retrieval_candidates`).
    ``relevant_min_rating``: which valid items count as relevant for the per_task monitor's
    NDCG (as in evaluation).
    """
    s = settings
    if s.ranking_loss == "full" and not has_product_ranking(model):
        raise PakdError(f"{name or model.kind}: ranking_loss full needs a dot-product ranking "
                        f"path (svd, the students); {model.kind} ranks pair by pair - use "
                        "softmax (sampled) instead")
    if s.negative_sampling == "retrieval" and (candidates is None
                                               or candidates.shape[1] > s.retrieval_n):
        raise PakdError(f"{name or model.kind}: negative_sampling retrieval needs the retrieval "
                        f"stage's top-{s.retrieval_n} candidates per user (train the --retrieval "
                        "member first)")
    sampler = NegativeSampler(enc, popularity=s.negative_sampling == "popularity",
                              candidates=candidates if s.negative_sampling == "retrieval" else None,
                              share=s.retrieval_share)
    objective = Supervised(enc, s, sampler=sampler, seed=seed,
                           relevant_min_rating=relevant_min_rating,
                           per_task=s.monitor == "per_task" and model.task_params() is not None)
    best = BestEpoch(objective.figures, s.patience, per_task=s.monitor == "per_task")
    callbacks = [Progress(quiet, unit="batch"), AllReduce(), best, _LogEpoch(best),
                 Checkpoint(best, checkpoint, state, resume, meta)]
    return Trainer(model, objective, s, callbacks, name=name).fit(enc)
