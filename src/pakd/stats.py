"""Evidence: bootstrap confidence intervals over users, and paired differences.

Test users are the unit of resampling: a user's ratings are not independent of each other,
so every metric - ranking metrics (means over users), RMSE and MAE (over the ratings of
the resampled users, each user weighted by how often it was drawn), AUC and LogLoss - is
recomputed on the same resampled users. A paired difference between two models on the same
part resamples the same users for both, which removes the users' own variance from the
comparison (Efron & Tibshirani 1993, ch. 13; for recommender evaluation see Sakai 2014,
"Statistical reform in information retrieval?").

The per-user results a model's evaluation saves (`per_user_payload`) are the input: one
array per ranking metric over the evaluated users, and per rating row the user, the
prediction and the truth (plus, for the binary protocol, the score, the calibrated
probability and the label).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import PakdError

METRICS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10")


def resample_weights(n_users: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_users] counts: how often each user is drawn in each bootstrap sample."""
    if n_users < 2:
        raise PakdError(f"a bootstrap needs at least 2 users in the part, got {n_users}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_users, size=(resamples, n_users))
    flat = (idx + n_users * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_users).reshape(resamples, n_users) \
        .astype(np.float64)


def _positions(users: np.ndarray, of: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(users, of)
    if len(of) and (pos.max() >= len(users) or np.any(users[pos] != of)):
        raise PakdError("per-user results do not share their users; evaluate both on the "
                        "same split part")
    return pos


def _auc_parts(bin_pos: np.ndarray, score: np.ndarray, label: np.ndarray, n_users: int):
    """AUC as a bilinear form in the users' weights: A[u, v] counts the (positive of u,
    negative of v) pairs the positive wins (ties half), so for user weights w the AUC is
    w A w / ((w . P)(w . N)) with P, N each user's positives and negatives. A is built
    once; every resample then costs a [users x users] product."""
    order = np.argsort(score, kind="stable")
    s, y, u = score[order], label[order].astype(bool), bin_pos[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, int)
    group = np.cumsum(np.r_[False, s[1:] != s[:-1]]) if len(s) else np.zeros(0, int)
    neg = np.bincount(group[~y] * n_users + u[~y], minlength=len(starts) * n_users) \
        .reshape(len(starts), n_users).astype(np.float64)  # negatives per tie group and user
    below = np.cumsum(neg, axis=0) - neg
    wins = below[group[y]] + 0.5 * neg[group[y]]             # [positives, users]
    owner = sp.csr_matrix((np.ones(int(y.sum())), (u[y], np.arange(int(y.sum())))),
                          shape=(n_users, int(y.sum())))
    a = np.asarray(owner @ wins)
    return a, np.bincount(u[y], minlength=n_users), np.bincount(u[~y], minlength=n_users)


def metrics_under(weights: np.ndarray, payload: dict, metrics=METRICS) -> dict[str, np.ndarray]:
    """Every metric of ``payload`` with users weighted by each row of ``weights``
    ([R, n_users], columns in the order of ``payload["users"]``). A row of ones gives the
    metrics as evaluated."""
    users = payload["users"]
    out = {}
    need = set(metrics)
    rank_pos = _positions(users, payload["rank_users"]) if need - {"rmse", "mae", "auc",
                                                                    "logloss"} else None
    row_pos = _positions(users, payload["row_user"]) if need & {"rmse", "mae"} else None
    bin_pos = _positions(users, payload["bin_user"]) if need & {"auc", "logloss"} else None
    for m in metrics:
        if m in ("rmse", "mae"):
            err = payload["pred"] - payload["true"]
            per = np.bincount(row_pos, err * err if m == "rmse" else np.abs(err),
                              minlength=len(users))
            cnt = np.bincount(row_pos, minlength=len(users)).astype(np.float64)
            v = (weights @ per) / (weights @ cnt)
            out[m] = np.sqrt(v) if m == "rmse" else v
        elif m == "auc":      # the bilinear form is kept with the payload for reuse
            if "_auc" not in payload:
                payload["_auc"] = _auc_parts(bin_pos, payload["bin_score"],
                                             payload["bin_label"], len(users))
            a, pos, neg = payload["_auc"]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[m] = np.einsum("ru,ru->r", weights @ a, weights) / (
                    (weights @ pos) * (weights @ neg))
        elif m == "logloss":
            p = np.clip(payload["bin_prob"], 1e-7, 1 - 1e-7)
            y = payload["bin_label"]
            ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
            per = np.bincount(bin_pos, ll, minlength=len(users))
            cnt = np.bincount(bin_pos, minlength=len(users)).astype(np.float64)
            out[m] = (weights @ per) / (weights @ cnt)
        else:
            w = weights[:, rank_pos]
            out[m] = (w @ payload[m]) / w.sum(1)
    return out


def intervals(payload: dict, *, resamples: int = 1000, seed: int = 0,
              metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [low, high]}: percentile bootstrap interval over resampled users."""
    w = resample_weights(len(payload["users"]), resamples, seed)
    got = metrics_under(w, payload, metrics)
    a = (1 - level) / 2 * 100
    return {m: [float(np.nanpercentile(v, a)), float(np.nanpercentile(v, 100 - a))]
            for m, v in got.items()}


def paired(reference: dict, other: dict, *, resamples: int = 1000, seed: int = 0,
           metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [difference, low, high]} of ``other`` minus ``reference``, both evaluated on
    the same part: the same users resampled for both."""
    if not np.array_equal(reference["users"], other["users"]):
        raise PakdError("paired differences need both models evaluated on the same users")
    n = len(reference["users"])
    w = np.vstack([np.ones((1, n)), resample_weights(n, resamples, seed)])   # row 0: as is
    a, b = metrics_under(w, reference, metrics), metrics_under(w, other, metrics)
    q = (1 - level) / 2 * 100
    return {m: [float(b[m][0] - a[m][0]), float(np.nanpercentile(b[m][1:] - a[m][1:], q)),
                float(np.nanpercentile(b[m][1:] - a[m][1:], 100 - q))] for m in metrics}


def verdict(diff: list[float], lower_is_better: bool) -> str:
    """better / worse only when the interval of the difference excludes 0, else tie."""
    _, low, high = diff
    if low > 0:
        return "worse" if lower_is_better else "better"
    if high < 0:
        return "better" if lower_is_better else "worse"
    return "tie"


def pooled_paired(pairs: list[tuple[dict, dict]], *, resamples: int = 1000, seed: int = 0,
                  metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [difference, low, high, p]} of ``other`` minus ``reference`` pooled over
    seeds: ``pairs`` holds one (reference, other) per seed, each pair evaluated on that
    seed's split. The difference is the mean of the per-seed differences. Its interval is a
    two-stage bootstrap (Davison & Hinkley 1997, sec. 3.8): each resample draws seeds with
    replacement, then users within each drawn seed, so it carries the training variance
    between seeds as well as the users' (with few seeds it is wide, not falsely narrow).
    ``p``: two-sided bootstrap p-value of "no difference", 2 min(P(d <= 0), P(d >= 0))."""
    if not pairs:
        raise PakdError("pooling needs at least one seed")
    rng = np.random.default_rng(seed)
    per_seed, boot = [], []
    for k, (ref, other) in enumerate(pairs):
        if not np.array_equal(ref["users"], other["users"]):
            raise PakdError("paired differences need both models evaluated on the same users")
        n = len(ref["users"])
        w = np.vstack([np.ones((1, n)), resample_weights(n, resamples, seed + 7919 * (k + 1))])
        a, b = metrics_under(w, ref, metrics), metrics_under(w, other, metrics)
        d = {m: b[m] - a[m] for m in metrics}
        per_seed.append({m: d[m][0] for m in metrics})
        boot.append({m: d[m][1:] for m in metrics})
    s = len(pairs)
    draws = rng.integers(0, s, size=(resamples, s))           # seeds drawn per resample
    cols = rng.integers(0, resamples, size=(resamples, s))    # and a user resample for each
    q = (1 - level) / 2 * 100
    out = {}
    for m in metrics:
        point = float(np.mean([p[m] for p in per_seed]))
        stack = np.stack([b[m] for b in boot])                 # [seeds, resamples]
        dist = stack[draws, cols].mean(1)
        dist = dist[np.isfinite(dist)]
        if not len(dist):
            out[m] = [point, float("nan"), float("nan"), float("nan")]
            continue
        p = min(1.0, 2 * min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0))))
        out[m] = [point, float(np.percentile(dist, q)), float(np.percentile(dist, 100 - q)), p]
    return out


def holm(p_values: dict, alpha: float = 0.05) -> dict:
    """Holm's step-down correction (Holm 1979) of a family of tests: {key: adjusted p}.
    Reject a hypothesis when its adjusted p is below ``alpha``; the family-wise error rate
    stays at most ``alpha`` whatever the dependence between the tests."""
    keys = sorted((k for k in p_values if np.isfinite(p_values[k])), key=lambda k: p_values[k])
    out, running, m = {}, 0.0, len(keys)
    for i, k in enumerate(keys):
        running = max(running, min(1.0, (m - i) * p_values[k]))
        out[k] = running
    out.update({k: float("nan") for k in p_values if k not in out})
    return out
