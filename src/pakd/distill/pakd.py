"""The PAKD loop: distil the teacher into a student while pruning it progressively.

Pruning follows the cubic schedule of Zhu & Gupta (2017): after a share t of the pruning
window the student has lost  ratio * (1 - (1 - t)^3)  of its parameters, in ``prune_steps``
steps spread over the first ``prune_until`` of training. At each step the least important
units go - physically (`prune_units`), so the model really shrinks - and the optimiser is
rebuilt for the new shapes. Once the target is reached, training continues to recover and
the best validation epoch at the target size is kept (early stopping with patience); for a
student whose rating and ranking outputs share no parameters, each output keeps its own
best epoch (valid RMSE, valid NDCG@10), else one epoch by NDCG and RMSE retention together.
Every method gets the same epochs, batches and data; only the criterion and the loss change.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig, EvalConfig
from ..data.encoding import Encoded
from ..evaluate import predict_ratings, ranking_metrics
from ..metrics import rmse
from ..models.base import RecModel
from ..prune import prune_units
from ..runs import log, progress
from ..train import BestKeeper, NegativeSampler, l2_rows, ranking_loss
from . import losses as L
from .importance import MaskFisher, choose_units, magnitude_scores, random_scores
from .signals import TeacherSignals

METHODS = {
    # name: (criterion, distil?)
    "fisher_kd": ("fisher", True),
    "magnitude_kd": ("magnitude", True),
    "random_kd": ("random", True),
    "fisher_ft": ("fisher", False),
    "scratch": (None, False),
}


@dataclass
class StudentResult:
    model: RecModel
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int = 0
    start_params: int = 0
    prune_log: list[dict] = field(default_factory=list)
    best_epochs: dict = field(default_factory=dict)


def _optimizer(student: RecModel, proj: nn.Module | None, cfg: DistillConfig):
    emb = {id(m.weight) for m, _ in student.lookup_rows(torch.zeros(1, dtype=torch.long),
                                                        torch.zeros(1, dtype=torch.long))}
    dense = [p for p in student.parameters() if id(p) not in emb]
    if proj is not None:
        dense += list(proj.parameters())
    sparse = [p for p in student.parameters() if id(p) in emb]
    return torch.optim.AdamW([{"params": dense, "weight_decay": cfg.weight_decay},
                              {"params": sparse, "weight_decay": 0.0}], lr=cfg.lr)


def _slice_projection(student: RecModel, proj: nn.Linear, group: str, keep: torch.Tensor,
                      gen: torch.Generator) -> nn.Linear:
    """Keep the projection's input columns that survive pruning ``group``."""
    owner = student.hidden_owner(group) if hasattr(student, "hidden_owner") else None
    if owner is None:
        return proj
    drop = owner[~keep].flatten()
    cols = torch.ones(proj.in_features, dtype=torch.bool)
    cols[drop] = False
    new = nn.Linear(int(cols.sum()), proj.out_features)
    with torch.no_grad():
        new.weight.copy_(proj.weight[:, cols])
        new.bias.copy_(proj.bias)
    return new


def schedule(step: int, total: int, ratio: float) -> float:
    """Cubic sparsity schedule (Zhu & Gupta 2017): share of parameters removed by ``step``."""
    t = min(1.0, step / max(1, total))
    return ratio * (1 - (1 - t) ** 3)


def distill(student: RecModel, enc: Encoded, teacher: TeacherSignals, cfg: DistillConfig,
            ecfg: EvalConfig, *, method: str, ratio: float, teacher_valid: dict,
            seed: int = 0, quiet: bool = True, name: str = "") -> StudentResult:
    criterion, use_kd = METHODS[method]
    tasks = set(cfg.distill_tasks) if use_kd else set()
    ratio = ratio if criterion is not None else 0.0
    gen = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(enc)
    tr = enc.parts["train"]
    n = len(tr)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    window = max(1, int(cfg.prune_until * total_steps))
    prune_at = sorted({max(1, round(window * (k + 1) / cfg.prune_steps))
                       for k in range(cfg.prune_steps)}) if ratio > 0 else []
    start = student.n_params()
    proj = None
    if "feature" in tasks:
        with torch.no_grad():
            hdim = student(tr.user[:2], tr.item[:2]).hidden.shape[1]
        proj = nn.Linear(hdim, teacher.features.shape[1])
    opt = _optimizer(student, proj, cfg)
    buckets = 2 if cfg.fisher_balance else 1
    fisher = MaskFisher(student, buckets) if criterion == "fisher" and ratio > 0 else None
    res = StudentResult(student, start_params=start)
    keeper, step = None, 0
    ecfg10 = ecfg.model_copy(update={"ks": [10]})
    t_train = 0.0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        student.train()
        perm = torch.randperm(n, generator=gen)
        sums = np.zeros(3)
        bar = progress(range(steps_per_epoch), desc=f"{name} epoch {epoch + 1}", quiet=quiet,
                       unit="step")
        for b in bar:
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            u, i, r = tr.user[idx], tr.item[idx], tr.rating[idx]
            B = len(u)
            neg = sampler.sample(u, cfg.negatives, gen)
            nn_ = cfg.negatives
            users = torch.unique(u)
            if "ranking" in tasks:
                users = users[torch.randperm(len(users), generator=gen)[:cfg.list_users]]
                cands = torch.cat([teacher.top[users], torch.randint(
                    0, enc.n_items, (len(users), cfg.list_random), generator=gen)], 1)
            else:
                users = users[:0]
                cands = torch.zeros(0, 1, dtype=torch.long)
            Lc = cands.shape[1]
            # rated pairs: the full forward; negatives and candidate lists: ranking logits only
            out = student(u, i)
            if fisher is not None:
                fisher.next_call()
            lg = student.pair_logits(torch.cat([u.repeat_interleave(nn_), users.repeat_interleave(Lc)]),
                                     torch.cat([neg.flatten(), cands.flatten()]))
            rat, pl = out.rating, out.logit
            nl = lg[:B * nn_].view(B, nn_)
            gt = F.mse_loss(rat, r) + ranking_loss(pl, nl, "softmax")
            loss = cfg.label_weight * gt if use_kd else gt
            kd = torch.zeros(())
            if "rating" in tasks:
                kd = kd + cfg.rating_weight * L.rating_distill(rat, teacher.ratings[idx])
            if "ranking" in tasks and len(users):
                sl = lg[B * nn_:].view(len(users), Lc)
                tl = teacher.scores[users.unsqueeze(1), cands]
                kd = kd + cfg.ranking_weight * L.listwise_kl(sl, tl, cfg.temperature)
            if "feature" in tasks:
                kd = kd + cfg.feature_weight * L.feature_distill(proj(out.hidden),
                                                                 teacher.features[idx])
            loss = loss + kd
            if cfg.l2 > 0:
                reg = l2_rows(student, u, i)
                loss = loss + cfg.l2 * reg / B
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if fisher is not None:
                rest = torch.cat([torch.arange(B).repeat_interleave(nn_),
                                  B + torch.arange(len(users)).repeat_interleave(Lc)])
                bucket = torch.cat([torch.zeros(B, dtype=torch.long),     # rated pairs
                                    torch.full((len(users),), buckets - 1)])  # candidate lists
                fisher.accumulate([torch.arange(B), rest], B + len(users), bucket)
            sums += np.array([loss.item(), gt.item(), kd.item()]) * B
            step += 1
            if prune_at and step == prune_at[0]:
                prune_at.pop(0)
                student, proj = _prune_step(student, proj, fisher, criterion, ratio, start,
                                            step, window, gen, res, cfg.fisher_balance)
                opt = _optimizer(student, proj, cfg)
                if fisher is not None:
                    fisher.close()
                    fisher = MaskFisher(student, buckets)
        t_train += time.perf_counter() - t0
        val = _validate(student, enc, ecfg10)
        score = (val["valid_ndcg@10"] / max(teacher_valid["ndcg@10"], 1e-12)
                 - val["valid_rmse"] / teacher_valid["rmse"])
        at_target = not prune_at
        rec = {"epoch": epoch + 1, "loss": sums[0] / n, "label_loss": sums[1] / n,
               "kd_loss": sums[2] / n, "params": student.n_params(), **val, "score": score,
               "seconds": time.perf_counter() - t0}
        res.history.append(rec)
        if at_target:
            if keeper is None:   # from here on the architecture is final
                keeper = BestKeeper(student, per_task=True)
            figures = ({"rating": val["valid_rmse"], "ranking": -val["valid_ndcg@10"]}
                       if keeper.split else {"all": -score})
            if keeper.update(student, figures, epoch):
                res.best_epoch = epoch + 1
        log.debug("%s epoch %d: %s", name, epoch + 1, rec)
        if keeper is not None and keeper.stale >= cfg.patience:
            break
    if fisher is not None:
        fisher.close()
    res.model = (keeper.restore(student) if keeper is not None else student).eval()
    if keeper is not None:
        res.best_epochs = {k: e + 1 for k, e in keeper.epoch.items()}
    res.train_seconds = t_train
    return res


def _prune_step(student, proj, fisher, criterion, ratio, start, step, window, gen, res,
                balance=None):
    target = schedule(step, window, ratio)
    need = int(round(target * start)) - (start - student.n_params())
    if need <= 0:
        return student, proj
    if criterion == "fisher":
        scores, per_param = fisher.scores(balance or None), True
    elif criterion == "magnitude":
        scores, per_param = magnitude_scores(student), False
    else:
        scores, per_param = random_scores(student, gen), False
    keep = choose_units(student, scores, need, per_param=per_param)
    before = student.n_params()
    for gname, k in keep.items():
        if not bool(k.all()):
            if proj is not None:
                proj = _slice_projection(student, proj, gname, k, gen)
            student = prune_units(student, gname, k)
    student.train()
    if proj is not None:
        with torch.no_grad():
            width = student(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)).hidden.shape[1]
        if width != proj.in_features:   # a hidden width we cannot map: start the projection anew
            proj = nn.Linear(width, proj.out_features)
    res.prune_log.append({"step": step, "target_ratio": target, "params_before": before,
                          "params_after": student.n_params(),
                          "removed_ratio": 1 - student.n_params() / start})
    return student, proj


@torch.no_grad()
def _validate(model: RecModel, enc: Encoded, ecfg: EvalConfig) -> dict:
    model.eval()
    va = enc.parts["valid"]
    pred = predict_ratings(model, va.user, va.item)
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    out = {"valid_rmse": rmse(pred, va.rating, scale)}
    with torch.inference_mode():
        out["valid_ndcg@10"] = ranking_metrics(model, enc, ecfg, "valid")["ndcg@10"]
    return out
