"""Every accuracy number pakd reports comes from here.

- Rating: RMSE and MAE, predictions clipped to the rating scale first.
- Binary (the AutoInt paper's protocol on explicit ratings): rating > 3 is positive,
  rating < 3 negative, rating = 3 dropped (thresholds configurable). AUC uses average ranks
  for tied scores (Mann-Whitney U); LogLoss takes probabilities.
- Full-ranking top-K: every catalogue item is scored for each evaluated user, the user's
  already-seen items (train, and valid when testing) are excluded, and the relevant items
  are the user's held-out items. Ties in score are broken by item index (a stable sort),
  so results are deterministic. Users with no relevant item are skipped and counted.
  Recall@K = hits / |relevant| (not capped at K); NDCG@K uses binary gains with the ideal
  DCG over min(|relevant|, K) items; MRR@K is 0 when no relevant item is in the top K.
- Beside NDCG@K, ``ndcg@K_rel4``: the same ranking scored with only the held-out items rated
  >= 4 relevant (liked, not merely rated), over the evaluated users who have such an item
  (``users_evaluated_rel4``); the metric the relevance setting changes, shown beside it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from .errors import PakdError

# ndcg@K_rel4: held-out items rated at least this count as relevant (the key is stable)
HIGH_RATING = 4.0
HIGH_SUFFIX = "_rel4"


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def rmse(pred, true, scale: tuple[float, float] | None = None) -> float:
    p, t = _np(pred), _np(true)
    _check_len(p, t)
    if scale is not None:
        p = np.clip(p, *scale)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred, true, scale: tuple[float, float] | None = None) -> float:
    p, t = _np(pred), _np(true)
    _check_len(p, t)
    if scale is not None:
        p = np.clip(p, *scale)
    return float(np.mean(np.abs(p - t)))


def _check_len(p, t):
    if p.shape != t.shape:
        raise PakdError(f"predictions ({p.shape}) and targets ({t.shape}) differ in shape")
    if p.size == 0:
        raise PakdError("no rows to evaluate")


def binary_labels(ratings, pos_above: float = 3.0, neg_below: float = 3.0):
    """(mask of kept rows, 0/1 labels of kept rows) under the AutoInt protocol."""
    r = _np(ratings)
    pos, neg = r > pos_above, r < neg_below
    keep = pos | neg
    return keep, pos[keep].astype(np.float64)


def auc(scores, labels) -> float:
    s, y = _np(scores), _np(labels)
    _check_len(s, y)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos + n_neg != len(y):
        raise PakdError("AUC labels must be 0 or 1")
    if n_pos == 0 or n_neg == 0:
        raise PakdError(f"AUC needs both classes; got {n_pos} positive and {n_neg} negative "
                        "rows (check the binary thresholds or the evaluated split)")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(prob, labels, eps: float = 1e-7) -> float:
    p, y = np.clip(_np(prob), eps, 1 - eps), _np(labels)
    _check_len(p, y)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _rows_dense(csr, rows: np.ndarray, n_cols: int) -> torch.Tensor:
    """Boolean dense [len(rows), n_cols] of a CSR matrix's rows."""
    sub = csr[rows]
    out = torch.zeros(len(rows), n_cols, dtype=torch.bool)
    if sub.nnz:
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        out[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = True
    return out


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's k highest scores, best first, equal scores in item-index order:
    the first k of a stable descending sort, without sorting whole rows. Items scoring above
    the k-th value are in; of those equal to it, the lowest indices fill the rest."""
    b, n = scores.shape
    if k >= n:
        return torch.sort(scores, dim=1, descending=True, stable=True).indices
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above, at = scores > kth, scores == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (at & (torch.cumsum(at, 1) <= need))
    idx = chosen.nonzero()[:, 1].view(b, k)                    # ascending item index per row
    order = torch.sort(torch.gather(scores, 1, idx), dim=1, descending=True, stable=True).indices
    return torch.gather(idx, 1, order)


def _chunk_scores(score_fn, rows: np.ndarray, n_items: int, exclude) -> torch.Tensor:
    """A chunk's scores, shape checked, NaN and the ``exclude``-d items ranked last."""
    with torch.no_grad():
        scores = score_fn(torch.from_numpy(rows)).float()
    if scores.shape != (len(rows), n_items):
        raise PakdError(f"score_fn returned shape {tuple(scores.shape)}, expected "
                        f"{(len(rows), n_items)}")
    scores = torch.nan_to_num(scores.clone(), nan=-torch.inf)
    if exclude is not None:
        scores[_rows_dense(exclude, rows, n_items)] = -torch.inf
    return scores


def _padded_hits(relevant, rows: np.ndarray, n_items: int, top: torch.Tensor,
                 kmax: int) -> torch.Tensor:
    """1.0 where a top-ranked item is relevant, padded with misses to ``kmax`` columns when
    the catalogue is smaller than K."""
    hits = torch.gather(_rows_dense(relevant, rows, n_items), 1, top).double()
    if top.shape[1] < kmax:
        hits = torch.nn.functional.pad(hits, (0, kmax - top.shape[1]))
    return hits


def _fill_chunk(values: dict, at: slice, hits: torch.Tensor, n_rel: torch.Tensor, ks,
                discounts: torch.Tensor, ideal: torch.Tensor) -> None:
    """Each user's recall, NDCG, hit, precision and MRR at every K into ``values[at]``."""
    first_hit = torch.where(hits.any(1), hits.argmax(1).double() + 1, torch.inf)
    for k in ks:
        h = hits[:, :k]
        nh = h.sum(1)
        dcg = (h * discounts[:k]).sum(1)
        idcg = ideal[(torch.clamp(n_rel, max=k) - 1).long()]
        values[f"recall@{k}"][at] = (nh / n_rel).numpy()
        values[f"ndcg@{k}"][at] = (dcg / idcg).numpy()
        values[f"hit@{k}"][at] = (nh > 0).double().numpy()
        values[f"precision@{k}"][at] = (nh / k).numpy()
        values[f"mrr@{k}"][at] = torch.where(first_hit <= k, 1.0 / first_hit,
                                             torch.zeros_like(first_hit)).numpy()


def topk_metrics(score_fn: Callable[[torch.Tensor], torch.Tensor], relevant, exclude=None, *,
                 ks: Sequence[int] = (10, 20), users: Iterable[int] | None = None,
                 chunk: int = 512, progress=None, per_user: bool = False,
                 relevant_high=None) -> dict:
    """Full-ranking top-K metrics.

    score_fn: user indices (long [B]) -> scores [B, n_items] (higher is better).
    relevant / exclude: scipy CSR user x item matrices (held-out items / items to skip).
    relevant_high: a CSR of the held-out items rated >= `HIGH_RATING`: adds
    ``ndcg@K_rel4`` over the evaluated users with one (read off the same top K).
    Returns ``{"recall@10": ..., "ndcg@10": ..., "hit@10": ..., "precision@10": ...,
    "mrr@10": ..., "users_evaluated": n, "users_without_relevant": m}``; each metric is the
    mean of its per-user values, which ``per_user`` adds as ``"per_user": {"users": [n],
    "ndcg@10": [n], ...}`` (the evaluated users, ascending).
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise PakdError("K must be a positive integer")
    kmax = ks[-1]
    n_users, n_items = relevant.shape
    all_users = np.arange(n_users) if users is None else np.asarray(list(users), dtype=np.int64)
    n_rel_all = np.diff(relevant.indptr)[all_users]
    eval_users = all_users[n_rel_all > 0]
    # per-user values go straight into arrays of the final size: small tensors kept from
    # every chunk would sit between the chunks' freed score blocks and fragment the heap
    # (glibc then grew the process by ~6 MB per chunk: 14 GB over 138k users)
    values = {f"{m}@{k}": np.zeros(len(eval_users)) for k in ks
              for m in ("recall", "ndcg", "hit", "precision", "mrr")}
    high = np.full(len(eval_users), np.nan) if relevant_high is None else \
        np.diff(relevant_high.indptr)[eval_users].astype(np.float64)
    values_high = {k: np.full(len(eval_users), np.nan) for k in ks}
    discounts = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)
    for start in range(0, len(eval_users), chunk):
        rows = eval_users[start:start + chunk]
        scores = _chunk_scores(score_fn, rows, n_items, exclude)
        k_eff = min(kmax, n_items)
        top = top_k(scores, k_eff)
        at = slice(start, start + len(rows))
        hits = _padded_hits(relevant, rows, n_items, top, kmax)
        n_rel = torch.from_numpy(np.diff(relevant.indptr)[rows]).double()
        _fill_chunk(values, at, hits, n_rel, ks, discounts, ideal)
        if relevant_high is not None:
            n_high = torch.from_numpy(high[at])
            hh = _padded_hits(relevant_high, rows, n_items, top, kmax)
            for k in ks:
                idcg = ideal[(torch.clamp(n_high, min=1, max=k) - 1).long()]
                v = (hh[:, :k] * discounts[:k]).sum(1) / idcg
                values_high[k][at] = torch.where(
                    n_high > 0, v, torch.full_like(v, float("nan"))).numpy()
        if progress is not None:
            progress.update(len(rows))
    return _means(values, values_high if relevant_high is not None else None, high,
                  eval_users, len(all_users), per_user)


def _means(values: dict, values_high: dict | None, high: np.ndarray, eval_users: np.ndarray,
           n_all: int, per_user: bool) -> dict:
    """Each metric's mean over the evaluated users (NDCG over the users with a highly
    rated held-out item for the ``_rel4`` figures), the user counts, and per user."""
    n = len(eval_users)
    out: dict = {key: (float(v.mean()) if n else float("nan")) for key, v in values.items()}
    out["users_evaluated"] = int(n)
    if values_high is not None:
        has = high > 0
        for k, v in values_high.items():
            out[f"ndcg@{k}{HIGH_SUFFIX}"] = float(v[has].mean()) if has.any() \
                else float("nan")
        out[f"users_evaluated{HIGH_SUFFIX}"] = int(has.sum())
    out["users_without_relevant"] = int(n_all - n)
    if per_user:
        order = np.argsort(eval_users, kind="stable")
        out["per_user"] = {"users": eval_users[order],
                           **{key: v[order] for key, v in values.items()}}
    return out
