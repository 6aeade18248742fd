"""The sequence members' objective (SASRec): next items, as an objective of the one loop.

Each user's train items in time order (the model's stored history, `SASRec.hist_items`)
give inputs s_1..s_(n-1) and targets s_2..s_n. The positions are cut into windows of the
model's ``max_len``, the last window ending at the newest item, earlier windows before it
(the first left-padded), so every train item but a user's first is predicted once an
epoch, from at most ``max_len`` items before it. Per step:

loss = ranking_loss_weight * mean over predicted positions of the cross-entropy of the next
       item against the whole catalogue (logits h_t . E_i + c_i; ``ranking_loss full``), or
       against ``negatives`` items drawn once per step by train popularity and shared by
       every position (``softmax``: each logit minus its item's log probability of being
       drawn, the logQ correction; a drawn item equal to the target is left out)
     + rating_loss_weight * MSE of the rating head on a share of the train ratings
     + l2 * squared norm of the rating rows those ratings touch / their number

A step holds about ``batch_size`` predicted positions (``batch_size // max_len`` windows)
and 1/steps of the train ratings (shuffled, so each rating is used once an epoch). A user
with one train item has no position to predict (their rating still trains); the model
then reads that one item when scoring (`pakd.models.sasrec`). After each epoch the valid
RMSE and the full-catalogue valid NDCG@10 are measured, and each output keeps its own best
epoch (the heads share no parameter).
"""
from __future__ import annotations

import math
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
from .supervised import l2_rows
from .trainer import Callback, FitResult, Trainer


def windows(indptr: torch.Tensor, items: torch.Tensor, max_len: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, targets), each [windows, max_len]: input tokens (item + 1, 0 = padding,
    right-aligned) and the item each position predicts (-1 = none), over every user's
    sequence ``items[indptr[u]:indptr[u + 1]]`` cut from its end."""
    tok_rows, tgt_rows = [], []
    ip = indptr.tolist()
    for u in range(len(ip) - 1):
        seq = items[ip[u]:ip[u + 1]]
        n = len(seq) - 1                    # positions with a next item
        for end in range(n, 0, -max_len):
            start = max(0, end - max_len)
            tok = torch.zeros(max_len, dtype=torch.long)
            tgt = torch.full((max_len,), -1, dtype=torch.long)
            k = end - start
            tok[max_len - k:] = seq[start:end] + 1
            tgt[max_len - k:] = seq[start + 1:end + 1]
            tok_rows.append(tok)
            tgt_rows.append(tgt)
    if not tok_rows:
        return (torch.zeros(0, max_len, dtype=torch.long),
                torch.zeros(0, max_len, dtype=torch.long))
    return torch.stack(tok_rows), torch.stack(tgt_rows)


class NextItem:
    """The objective of `fit_sequence` (see the module docstring)."""

    def __init__(self, enc: Encoded, model: RecModel, settings, *, seed: int,
                 relevant_min_rating: float | None = None):
        self.enc, self.s, self.seed = enc, settings, seed
        self.relevant_min_rating = relevant_min_rating
        self.tokens, self.targets = windows(model.hist_indptr, model.hist_items, model.max_len)
        self.per_step = max(1, settings.batch_size // model.max_len)
        self.steps = max(1, math.ceil(len(self.tokens) / self.per_step))
        self.positions = int((self.targets >= 0).sum())
        if settings.ranking_loss not in ("full", "softmax"):
            raise PakdError(f"sasrec: --sasrec-ranking-loss {settings.ranking_loss} is not a "
                            "loss of the sequence objective; use full (the whole catalogue) "
                            "or softmax (shared sampled negatives)")
        self.log_q = None
        if settings.ranking_loss == "softmax":
            q = torch.bincount(enc.parts["train"].item, minlength=enc.n_items).double() + 1.0
            self.q = q / q.sum()
            self.log_q = self.q.log().float()

    def steps_per_epoch(self) -> int:
        return self.steps

    def batches(self, enc: Encoded, epoch: int):
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        order = torch.randperm(len(self.tokens), generator=gen)
        tr = enc.parts["train"]
        pairs = torch.randperm(len(tr), generator=gen)
        per_pairs = math.ceil(len(tr) / self.steps)
        for s in range(self.steps):
            w = order[s * self.per_step:(s + 1) * self.per_step]
            p = pairs[s * per_pairs:(s + 1) * per_pairs]
            neg = (torch.multinomial(self.q, self.s.negatives, replacement=True, generator=gen)
                   if self.log_q is not None else None)
            yield (self.tokens[w], self.targets[w], tr.user[p], tr.item[p], tr.rating[p], neg)

    def next_item_loss(self, model, h: torch.Tensor, target: torch.Tensor,
                       neg: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy summed over positions: h [P, dim], target [P]."""
        if neg is None:
            return F.cross_entropy(model.catalogue(h), target, reduction="sum")
        pos = (h * model.item_emb(target + 1)).sum(1) + model.item_rank_bias.weight[target, 0]
        logits = torch.cat([(pos - self.log_q[target])[:, None],
                            model.catalogue(h, neg) - self.log_q[neg]], 1)
        hit = torch.cat([torch.zeros(len(target), 1, dtype=torch.bool),
                         neg[None, :] == target[:, None]], 1)
        return F.cross_entropy(logits.masked_fill(hit, float("-inf")),
                               torch.zeros(len(target), dtype=torch.long), reduction="sum")

    def losses(self, model, tokens, targets, u, i, r, neg=None):
        """(total, rating MSE summed, ranking cross-entropy summed, positions, ratings)."""
        total = torch.zeros(())
        ce_sum = torch.zeros(())
        n_pos = int((targets >= 0).sum())
        if n_pos:
            h = model.encode(tokens)[targets >= 0]                   # [positions, dim]
            ce_sum = self.next_item_loss(model, h, targets[targets >= 0], neg)
            total = total + self.s.ranking_loss_weight * ce_sum / n_pos
        se_sum = torch.zeros(())
        if len(u):
            se_sum = ((model.rating_of(u, i) - r) ** 2).sum()
            total = total + self.s.rating_loss_weight * se_sum / len(u)
            if self.s.l2 > 0:
                total = total + self.s.l2 * l2_rows(model, u, i) / len(u)
        return total, se_sum, ce_sum, n_pos, len(u)

    def backward(self, model: RecModel, batch) -> np.ndarray:
        """Backpropagate this process's share of the step; (MSE sum, ratings, cross-entropy
        sum, positions) of the step."""
        tokens, targets, u, i, r, neg = batch
        wm, pm = distributed.shard(len(tokens)), distributed.shard(len(u))
        total, se, ce, n_pos, n_r = self.losses(model, tokens[wm], targets[wm], u[pm], i[pm],
                                                r[pm], neg)
        share = distributed.world()
        if total.requires_grad:
            (total / share).backward()
        return np.array([float(se.detach()), n_r, float(ce.detach()), n_pos], dtype=np.float64)

    @torch.no_grad()
    def epoch_record(self, model: RecModel, enc: Encoded, sums: np.ndarray) -> dict:
        from ..evaluate import ranking_metrics
        model.eval()
        va = enc.parts["valid"]
        rmse = float("nan")
        if len(va):
            pred = torch.cat([model.rating_of(va.user[s:s + 8192], va.item[s:s + 8192])
                              for s in range(0, len(va), 8192)])
            rmse = float(torch.sqrt(((pred - va.rating) ** 2).mean()))
        ndcg = ranking_metrics(model, enc, "valid", ks=[10], chunk=512,
                               relevant_min_rating=self.relevant_min_rating)["ndcg@10"]
        return {"train_rmse": float(np.sqrt(sums[0] / max(1, sums[1]))),
                "train_rank_loss": float(sums[2] / max(1, sums[3])),
                "valid_rmse": rmse, "valid_ndcg@10": ndcg}

    def figures(self, record: dict, keeper) -> dict:
        """Each output its own best epoch: valid RMSE, minus valid NDCG@10."""
        rmse = record["valid_rmse"]
        rating = rmse if math.isfinite(rmse) else 0.0       # no valid ratings: any epoch
        if keeper.split:
            return {"rating": rating, "ranking": -record["valid_ndcg@10"]}
        return {"all": -record["valid_ndcg@10"]}


class _LogEpoch(Callback):
    def __init__(self, best: BestEpoch):
        self.best = best

    def on_epoch_end(self, trainer: Trainer, r: dict) -> None:
        log.info("%s epoch %d: train rmse %.4f, next-item loss %.4f | valid rmse %.4f, "
                 "NDCG@10 %.4f | %.1fs%s", trainer.name, r["epoch"], r["train_rmse"],
                 r["train_rank_loss"], r["valid_rmse"], r["valid_ndcg@10"], r["seconds"],
                 " *" if self.best.improved else "")


def fit_sequence(model: RecModel, enc: Encoded, settings, *, seed: int = 0, name: str = "",
                 checkpoint: Path | None = None, state: Path | None = None,
                 resume: bool = False, quiet: bool = False, meta: dict | None = None,
                 relevant_min_rating: float | None = None, **_) -> FitResult:
    """Train a sequence member in place (its stored histories give the sequences); it ends
    holding the best valid weights of each output. Arguments as `pakd.train.fit`."""
    if not hasattr(model, "encode") or not hasattr(model, "hist_items"):
        raise PakdError(f"{name or model.kind}: the sequence objective needs a sequence "
                        "member (sasrec)")
    objective = NextItem(enc, model, settings, seed=seed,
                         relevant_min_rating=relevant_min_rating)
    if not objective.positions:
        log.warning("%s: no user has two train items, so there is no next item to learn "
                    "from: only the rating head trains and the ranking stays as initialised",
                    name or model.kind)
    best = BestEpoch(objective.figures, settings.patience, per_task=True)
    callbacks = [Progress(quiet, unit="batch"), AllReduce(), best, _LogEpoch(best),
                 Checkpoint(best, checkpoint, state, resume, meta)]
    return Trainer(model, objective, settings, callbacks, name=name).fit(enc)
