"""Evaluate any `RecModel` on a split part with the metrics of `pakd.metrics`.

Rating metrics use the rating output. AUC uses the rating output as the score of "liked"
(AutoInt protocol labels); LogLoss needs a probability, so the rating output is mapped
through a logistic curve p = sigmoid(a * rating + b) fitted on the validation part (Platt
scaling) - the model itself never saw binary labels. Top-K metrics rank the full catalogue
by the ranking logit, excluding the user's train items (and valid items when testing).
Settings arrive as plain keyword arguments (``**cfg.eval.kwargs()`` from a run's config).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from . import metrics as M
from .data.encoding import Encoded
from .memory import DEFAULT_BUDGET_GB, user_chunk
from .models.base import RecModel
from .runtime import progress


@torch.no_grad()
def predict_ratings(model: RecModel, user: torch.Tensor, item: torch.Tensor,
                    batch: int = 1024) -> torch.Tensor:
    model.eval()
    out = [model(user[s:s + batch], item[s:s + batch]).rating for s in range(0, len(user), batch)]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def score_matrix(model: RecModel, users: int | torch.Tensor, chunk: int = 64,
                 progress=None) -> torch.Tensor:
    """Ranking logits (float32) of ``users`` (indices, or a count: the first that many) x
    all items."""
    model.eval()
    users = torch.arange(users) if isinstance(users, int) else users
    out = []
    for s in range(0, len(users), chunk):
        rows = users[s:s + chunk]
        out.append(model.score_all(rows).float())
        if progress is not None:
            progress.update(len(rows))
    return torch.cat(out)


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Logistic calibration p = sigmoid(a * s + b), fitted by Newton's method."""
    s = (scores - scores.mean()) / (scores.std() + 1e-12)
    a, b = 1.0, 0.0
    from scipy.special import expit        # no overflow warning for large |a s + b|
    for _ in range(50):
        p = expit(a * s + b)
        w = p * (1 - p) + 1e-12
        g = np.array([((p - labels) * s).sum(), (p - labels).sum()])
        h = np.array([[(w * s * s).sum(), (w * s).sum()], [(w * s).sum(), w.sum()]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    # back to raw scores
    a_raw = a / (scores.std() + 1e-12)
    return float(a_raw), float(b - a_raw * scores.mean())


def rating_binary_metrics(pred: torch.Tensor, true: torch.Tensor, *, positive_above: float,
                          negative_below: float, scale: tuple[float, float],
                          platt: tuple[float, float] | None, rows: dict | None = None) -> dict:
    """RMSE, MAE, AUC and LogLoss; ``rows`` (a dict) receives the per-row arrays they come
    from (clipped prediction; binary rows' score, probability and label)."""
    p, t = pred.double().numpy(), true.double().numpy()
    out = {"rmse": M.rmse(p, t, scale), "mae": M.mae(p, t, scale)}
    keep, y = M.binary_labels(t, positive_above, negative_below)
    s = np.clip(p[keep], *scale)
    prob = np.full(len(y), 0.5)
    if len(y) and 0 < y.sum() < len(y):
        out["auc"] = M.auc(s, y)
        a, b = platt if platt is not None else fit_platt(s, y)
        from scipy.special import expit
        prob = expit(a * s + b)
        out["logloss"] = M.logloss(prob, y)
    else:
        out["auc"] = out["logloss"] = float("nan")
    if rows is not None:
        rows.update(pred=np.clip(p, *scale), true=t, bin_keep=keep, bin_score=s, bin_prob=prob,
                    bin_label=y)
    return out


def relevant_matrix(enc: Encoded, part: str, min_rating: float | None):
    pt = enc.parts[part]
    keep = np.ones(len(pt), bool) if min_rating is None else (pt.rating.numpy() >= min_rating)
    u, i = pt.user.numpy()[keep], pt.item.numpy()[keep]
    return sp.csr_matrix((np.ones(len(u), bool), (u, i)), shape=(enc.n_users, enc.n_items))


def exclusion_parts(part: str) -> tuple[str, ...]:
    return ("train",) if part == "valid" else ("train", "valid")


def evaluate(model: RecModel, enc: Encoded, part: str = "test", *, ks, positive_above: float,
             negative_below: float, relevant_min_rating: float | None, chunk: int,
             max_memory_gb: float = DEFAULT_BUDGET_GB, scores: torch.Tensor | None = None,
             quiet: bool = True, per_user: bool = False) -> dict:
    """All metrics of ``model`` on ``part``; ``scores`` may hold a precomputed score matrix.
    ``per_user`` adds ``"per_user"``: the per-user and per-rating arrays every metric is
    computed from (`pakd.stats` resamples users over them)."""
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    pt = enc.parts[part]
    pred = predict_ratings(model, pt.user, pt.item)
    platt = None
    if part != "valid":
        va = enc.parts["valid"]
        if len(va):
            vp = predict_ratings(model, va.user, va.item).double().numpy()
            keep, y = M.binary_labels(va.rating.numpy(), positive_above, negative_below)
            if len(y) and 0 < y.sum() < len(y):
                platt = fit_platt(np.clip(vp[keep], *scale), y)
    rows: dict = {}
    out = rating_binary_metrics(pred, pt.rating, positive_above=positive_above,
                                negative_below=negative_below, scale=scale, platt=platt,
                                rows=rows)
    out.update(ranking_metrics(model, enc, part, ks=ks, relevant_min_rating=relevant_min_rating,
                               chunk=chunk, max_memory_gb=max_memory_gb, scores=scores,
                               quiet=quiet, per_user=per_user))
    if per_user:
        ranks = out.pop("per_user")
        user = pt.user.numpy().astype(np.int64)
        out["per_user"] = {
            "users": np.unique(user), "rank_users": ranks.pop("users"), **ranks,
            "row_user": user, "pred": rows["pred"], "true": rows["true"],
            "bin_user": user[rows["bin_keep"]], "bin_score": rows["bin_score"],
            "bin_prob": rows["bin_prob"], "bin_label": rows["bin_label"]}
    return out


def ranking_metrics(model: RecModel | None, enc: Encoded, part: str, *, ks,
                    relevant_min_rating: float | None, chunk: int,
                    max_memory_gb: float = DEFAULT_BUDGET_GB,
                    scores=None, users=None, quiet: bool = True,
                    per_user: bool = False) -> dict:
    """Full-catalogue top-K metrics of ``model`` (or of ``scores``: a users x items matrix,
    or a function of user indices giving their rows) on ``part``, ``ndcg@K_rel4`` (only
    the held-out items rated >= 4 relevant) among them;
    ``users``: only these users (default all). At most ``chunk`` users are ranked at once,
    fewer when their users x items block would not fit ``max_memory_gb``
    (`pakd.memory.user_chunk`)."""
    chunk = min(chunk, user_chunk(enc.n_items, max_memory_gb))
    rel = relevant_matrix(enc, part, relevant_min_rating)
    high = relevant_matrix(enc, part, M.HIGH_RATING)       # ndcg@10_rel4 beside ndcg@10
    exc = enc.seen(exclusion_parts(part))
    if callable(scores):
        fn = scores
    elif scores is not None:
        fn = lambda u: scores[u]  # noqa: E731
    else:
        model.eval()
        fn = model.score_all
    n_rel = np.diff(rel.indptr) > 0
    n_eval = int(n_rel.sum() if users is None else n_rel[np.asarray(users, dtype=np.int64)].sum())
    with progress(total=n_eval, desc=f"rank {part}", quiet=quiet, unit="user") as bar:
        return M.topk_metrics(fn, rel, exc, ks=ks, users=users,
                              chunk=chunk if scores is not None else max(1, min(chunk, 64)),
                              progress=bar, per_user=per_user, relevant_high=high)


def evaluate_kept(cfg, rd, enc: Encoded, model: RecModel, name: str, *,
                  scores: torch.Tensor | None = None, parts=("test", "valid"),
                  quiet: bool = True) -> dict[str, dict]:
    """{part: metrics} of ``model`` under the run's evaluation settings; each part's
    per-user arrays saved in the run directory under ``name`` (for intervals, `pakd.stats`)."""
    out = {}
    for part in parts:
        m = evaluate(model, enc, part, **cfg.eval.kwargs(), scores=scores, quiet=quiet,
                     per_user=True)
        rd.save_per_user(name, part, m.pop("per_user"))
        out[part] = m
    return out


def baselines(enc: Encoded, cfg, rd=None) -> dict:
    """Global mean (rating) and MostPop (ranking by train popularity) on the test part;
    MostPop's per-user results kept in the run directory ``rd`` when given."""
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    tr, te = enc.parts["train"], enc.parts["test"]
    mu = float(tr.rating.mean())
    gm = {"rmse": M.rmse(np.full(len(te), mu), te.rating.numpy(), scale),
          "mae": M.mae(np.full(len(te), mu), te.rating.numpy(), scale),
          "auc": 0.5, "recall@10": None, "ndcg@10": None, "params": 1}
    keep, y = M.binary_labels(te.rating.numpy(), cfg.eval.positive_above, cfg.eval.negative_below)
    base_rate = float(y.mean()) if len(y) else float("nan")
    gm["logloss"] = M.logloss(np.full(len(y), base_rate), y) if len(y) else None
    pop = torch.bincount(tr.item, minlength=enc.n_items).float()
    mp = ranking_metrics(None, enc, "test", ks=cfg.eval.ks,
                         relevant_min_rating=cfg.eval.relevant_min_rating, chunk=cfg.eval.chunk,
                         scores=pop.expand(enc.n_users, -1), per_user=rd is not None)
    if rd is not None:
        ranks = mp.pop("per_user")
        rd.save_per_user("mostpop", "test", {"users": np.unique(te.user.numpy()),
                                             "rank_users": ranks.pop("users"), **ranks})
    mostpop = {"rmse": None, "mae": None, "auc": None, "logloss": None, **mp,
               "params": enc.n_items}
    return {"global_mean": gm, "mostpop": mostpop}
