"""One training loop for every model: multi-task loss, AdamW, early stopping, checkpoints.

Loss per step = rating_loss_weight * MSE(rating, observed rating)
              + ranking_loss_weight * ranking loss (observed item vs sampled unobserved items,
                or ``full``: softmax cross-entropy over the whole catalogue)
              + l2 * squared norm of the embedding rows the step touched.
The full softmax needs a model whose catalogue scores are one differentiable product
(`RecModel.pair_logits` overridden: svd, the lightweight student); each distinct user of a
batch is scored against every item once, so a step costs one [users, items] product.
Negatives are drawn uniformly from the catalogue with a fresh seeded generator per epoch
(items the user rated in train are redrawn once), so a resumed run repeats the same
epochs. Validation uses fixed sampled negatives; ``monitor`` picks the figure early stopping
watches (the weighted loss of both tasks, the RMSE or the ranking loss; ``per_task``: the
valid RMSE for the rating output and the full-catalogue valid NDCG@10 for the ranking one). The best weights are
kept and written atomically with the training state after every epoch, so ``resume``
continues an interrupted run where it stopped. Settings arrive as plain keyword arguments
(`pakd.config.fit_kwargs` turns a config section into them).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from .atomic import atomic_write_bytes
from .data.encoding import Encoded
from .errors import PakdError
from .models import save
from .models.base import RecModel
from .runtime import log, progress


_MONITOR = {"loss": "valid_loss", "rmse": "valid_rmse", "rank_loss": "valid_rank_loss"}


class BestKeeper:
    """Keeps the best weights seen so far (lower figures are better).

    With ``per_task`` and a model whose rating and ranking outputs read disjoint parameters
    (`RecModel.task_params`), each task keeps the weights of its own best epoch: the rating
    side often peaks after a few epochs while the ranking side still improves, and one
    shared stopping point would sacrifice one of them. Otherwise one state is kept.
    """

    def __init__(self, model: RecModel, per_task: bool):
        self.split = model.task_params() if per_task else None
        self.keys = ["rating", "ranking"] if self.split else ["all"]
        self.best = {k: float("inf") for k in self.keys}
        self.epoch = {k: -1 for k in self.keys}
        self.state: dict[str, dict] = {}
        self.stale = 0

    def update(self, model: RecModel, figures: dict[str, float], epoch: int) -> bool:
        sd = model.state_dict()
        improved = False
        for k in self.keys:
            if figures[k] < self.best[k] - 1e-6:
                self.best[k], self.epoch[k], improved = figures[k], epoch, True
                names = self.split[k] if self.split else list(sd)
                self.state[k] = {n: sd[n].detach().clone() for n in names}
        self.stale = 0 if improved else self.stale + 1
        return improved

    def restore(self, model: RecModel) -> RecModel:
        for part in self.state.values():
            model.load_state_dict(part, strict=False)
        return model

    def to_dict(self) -> dict:
        return {"best": self.best, "epoch": self.epoch, "state": self.state, "stale": self.stale}

    def load_dict(self, d: dict) -> None:
        self.best, self.epoch, self.state, self.stale = d["best"], d["epoch"], d["state"], d["stale"]


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict          # the monitored figure at the kept epoch, per kept state
    train_seconds: float
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    epoch_seconds: float = 0.0
    best_epochs: dict = field(default_factory=dict)


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
        from .evaluate import ranking_metrics
        out["valid_ndcg@10"] = ranking_metrics(model, enc, "valid", ks=[10],
                                               relevant_min_rating=relevant_min_rating,
                                               chunk=512)["ndcg@10"]
    return out


def fit(model: RecModel, enc: Encoded, *, epochs: int, batch_size: int, lr: float,
        weight_decay: float, l2: float, negatives: int, ranking_loss: str,
        rating_loss_weight: float, ranking_loss_weight: float, patience: int, monitor: str,
        micro_batch: int, negative_sampling: str, retrieval_share: float, retrieval_n: int,
        candidates: torch.Tensor | None = None, seed: int = 0, name: str = "",
        checkpoint: Path | None = None,
        state: Path | None = None, resume: bool = False, quiet: bool = False,
        meta: dict | None = None, relevant_min_rating: float | None = None) -> FitResult:
    """Train ``model`` in place; it ends holding the best validation weights.

    ``checkpoint``: stem the best weights are saved to at every improvement; ``state``: the
    resumable training state written after every epoch (read back with ``resume``).
    ``candidates`` ([users, <= retrieval_n]): the retrieval stage's top-N per user, the hard
    negatives of ``negative_sampling`` retrieval (`recipes.teachers.retrieval_candidates`).
    ``relevant_min_rating``: which valid items count as relevant for the per_task monitor's
    NDCG (as in evaluation).
    """
    if ranking_loss == "full" and not has_product_ranking(model):
        raise PakdError(f"{name or model.kind}: ranking_loss full needs a dot-product ranking "
                        f"path (svd, lightweight_model); {model.kind} ranks pair by pair - use "
                        "softmax (sampled) instead")
    if negative_sampling == "retrieval" and (candidates is None
                                             or candidates.shape[1] > retrieval_n):
        raise PakdError(f"{name or model.kind}: negative_sampling retrieval needs the retrieval "
                        f"stage's top-{retrieval_n} candidates per user (train the --retrieval "
                        "member first)")
    sampler = NegativeSampler(enc, popularity=negative_sampling == "popularity",
                              candidates=candidates if negative_sampling == "retrieval" else None,
                              share=retrieval_share)
    loss_spec = Loss(ranking_loss, rating_loss_weight, ranking_loss_weight, l2, sampler)
    opt = torch.optim.AdamW(model.param_groups(weight_decay), lr=lr)
    val_gen = torch.Generator().manual_seed(seed + 7919)
    val_negs = sampler.sample(enc.parts["valid"].user, 0 if ranking_loss == "full" else negatives,
                              val_gen)
    tr = enc.parts["train"]
    keeper = BestKeeper(model, per_task=monitor == "per_task")
    start_epoch, history, spent = 0, [], 0.0
    state_path = state
    if resume and state_path is not None and state_path.is_file():
        st = torch.load(state_path, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        keeper.load_dict(st["keeper"])
        start_epoch = int(st["epoch"]) + 1
        history, spent = list(st["history"]), float(st["seconds"])
        log.info("%s: resuming after epoch %d (best valid %s)", name, start_epoch, keeper.best)
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        if keeper.stale >= patience:
            break
        t0 = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(seed * 100003 + epoch)
        perm = torch.randperm(len(tr), generator=gen)
        sums, sent = np.zeros(3), 0
        bar = progress(range(0, len(tr), batch_size), desc=f"{name} epoch {epoch + 1}",
                       quiet=quiet or not distributed.is_main(), unit="batch")
        for s in bar:
            idx = perm[s:s + batch_size]
            u, i, r = tr.user[idx], tr.item[idx], tr.rating[idx]
            neg = sampler.sample(u, 0 if ranking_loss == "full" else negatives, gen)
            mine = distributed.shard(len(u))       # all of it in one process
            opt.zero_grad(set_to_none=True)
            sums += backward_step(model, u[mine], i[mine], r[mine], neg[mine], loss_spec,
                                  micro_batch, (mine.stop - mine.start) / len(u)) * len(u)
            sent += distributed.sum_gradients(model)
            opt.step()
        sums = distributed.sum_(torch.from_numpy(sums)).numpy()
        train_time = time.perf_counter() - t0
        spent += train_time
        val = validation_loss(model, enc, loss_spec, val_negs, ndcg=bool(keeper.split),
                              relevant_min_rating=relevant_min_rating)
        rec = {"epoch": epoch + 1, "train_loss": float(sums[0] / len(tr)),
               "train_rmse": float(np.sqrt(sums[1] / len(tr))),
               "train_rank_loss": float(sums[2] / len(tr)),
               **val, "seconds": train_time}
        if distributed.world() > 1:
            steps = -(-len(tr) // batch_size)
            rec.update(processes=distributed.world(), allreduce_bytes_per_step=sent / steps)
        history.append(rec)
        if keeper.split:
            figures = {"rating": val["valid_rmse"], "ranking": -val["valid_ndcg@10"]}
        else:
            figures = {"all": val[_MONITOR.get(monitor, "valid_loss")]}
        improved = keeper.update(model, figures, epoch)
        if improved and checkpoint is not None and distributed.is_main():
            best = keeper.restore(copy.deepcopy(model))
            save(best, checkpoint, meta={**(meta or {}), "best_epoch": {k: e + 1 for k, e in keeper.epoch.items()},
                                   "valid": val})
        log.info("%s epoch %d: train loss %.4f (rmse %.4f) | valid loss %.4f rmse %.4f rank %.4f"
                 " | %.1fs%s", name, epoch + 1, rec["train_loss"], rec["train_rmse"],
                 val["valid_loss"], val["valid_rmse"], val["valid_rank_loss"], train_time,
                 " *" if improved else "")
        if state_path is not None and distributed.is_main():
            st = {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch,
                  "keeper": keeper.to_dict(), "history": history, "seconds": spent}
            import io
            buf = io.BytesIO()
            torch.save(st, buf)
            atomic_write_bytes(state_path, buf.getvalue())
    keeper.restore(model)
    model.eval()
    n_ep = len(history)
    # per_task: rating -> valid RMSE, ranking -> minus valid NDCG@10 (lower is better)
    return FitResult(max(keeper.epoch.values()) + 1, dict(keeper.best), spent, n_ep,
                     history, spent / max(1, n_ep),
                     best_epochs={k: e + 1 for k, e in keeper.epoch.items()})
