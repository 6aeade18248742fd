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

from typing import NamedTuple

import numpy as np

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


def _auc_sorted(bin_pos: np.ndarray, score: np.ndarray, label: np.ndarray):
    """The binary rows in score order, sorted once for every resample: each row's user
    position, whether it is a positive, its tie group, and where each tie group starts."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    new = np.r_[True, s[1:] != s[:-1]] if len(s) else np.zeros(0, bool)
    return bin_pos[order], label[order].astype(bool), np.cumsum(new) - 1, np.flatnonzero(new)


# floats one block of resamples may hold in `_auc_under` (x a few copies: ~0.5 GB at most)
AUC_BLOCK = 1 << 24


def _auc_under(weights: np.ndarray, rows) -> np.ndarray:
    """AUC with users weighted by each row of ``weights``: a (positive of u, negative of v)
    pair counts w_u * w_v (a tie half), as if the resampled users' rows were pooled. One
    pass over the sorted rows per resample, resamples taken in blocks of `AUC_BLOCK`
    floats, so memory grows with the rows, never with users x users or groups x users."""
    u, y, group, starts = rows
    out = np.full(len(weights), np.nan)
    if not y.any() or y.all():
        return out
    pos_group = group[y]
    step = max(1, AUC_BLOCK // len(u))
    for r in range(0, len(weights), step):
        w = weights[r:r + step][:, u]                         # [b, rows] in score order
        neg = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)   # [b, tie groups]
        wins = np.cumsum(neg, axis=1) - 0.5 * neg             # below, plus half the ties
        wp = w[:, y]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r:r + step] = np.einsum("bp,bp->b", wp, wins[:, pos_group]) / (
                wp.sum(1) * neg.sum(1))
    return out


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
        elif m == "auc":      # the sorted rows are kept with the payload for reuse
            if "_auc" not in payload:
                payload["_auc"] = _auc_sorted(bin_pos, payload["bin_score"],
                                              payload["bin_label"])
            out[m] = _auc_under(weights, payload["_auc"])
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


class Bootstrap(NamedTuple):
    """A model's metrics under row 0 = the users as evaluated, then the bootstrap resamples
    (`resample_weights` of ``users``, ``resamples`` and the seed): one model's share of any
    interval or paired difference, computed once however many comparisons read it."""
    users: np.ndarray
    values: dict[str, np.ndarray]


def bootstrap(payload: dict, *, resamples: int = 1000, seed: int = 0,
              metrics=METRICS) -> Bootstrap:
    n = len(payload["users"])
    w = np.vstack([np.ones((1, n)), resample_weights(n, resamples, seed)])   # row 0: as is
    return Bootstrap(np.asarray(payload["users"]), metrics_under(w, payload, metrics))


def interval_of(b: Bootstrap, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [low, high]}: percentile bootstrap interval over resampled users."""
    a = (1 - level) / 2 * 100
    return {m: [float(np.nanpercentile(v[1:], a)), float(np.nanpercentile(v[1:], 100 - a))]
            for m, v in b.values.items()}


def paired_of(reference: Bootstrap, other: Bootstrap,
              level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [difference, low, high]} of ``other`` minus ``reference``: the same users
    resampled for both (both bootstraps taken with the same resamples and seed)."""
    if not np.array_equal(reference.users, other.users):
        raise PakdError("paired differences need both models evaluated on the same users")
    q = (1 - level) / 2 * 100
    out = {}
    for m, b in other.values.items():
        a = reference.values[m]
        if len(a) != len(b):
            raise PakdError("paired differences need both bootstraps with the same resamples")
        d = b[1:] - a[1:]
        out[m] = [float(b[0] - a[0]), float(np.nanpercentile(d, q)),
                  float(np.nanpercentile(d, 100 - q))]
    return out


def intervals(payload: dict, *, resamples: int = 1000, seed: int = 0,
              metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [low, high]}: percentile bootstrap interval over resampled users."""
    return interval_of(bootstrap(payload, resamples=resamples, seed=seed, metrics=metrics),
                       level)


def paired(reference: dict, other: dict, *, resamples: int = 1000, seed: int = 0,
           metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [difference, low, high]} of ``other`` minus ``reference``, both evaluated on
    the same part: the same users resampled for both (`paired_of` refuses other users)."""
    kw = dict(resamples=resamples, seed=seed, metrics=metrics)
    return paired_of(bootstrap(reference, **kw), bootstrap(other, **kw), level)


def verdict(diff: list[float], lower_is_better: bool) -> str:
    """better / worse only when the interval of the difference excludes 0, else tie."""
    _, low, high = diff
    if low > 0:
        return "worse" if lower_is_better else "better"
    if high < 0:
        return "better" if lower_is_better else "worse"
    return "tie"


def t_interval(values, level: float = 0.95) -> list[float]:
    """[mean, low, high]: Student's t interval of the mean of ``values`` (one per seed),
    mean +- t(1 - (1 - level) / 2, n - 1) sd / sqrt(n). It treats each seed as one draw of
    the whole experiment and nothing else, so with few seeds it is as wide as their spread
    says; NaN bounds below two values."""
    from scipy.stats import t
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(v):
        return [float("nan")] * 3
    mean = float(v.mean())
    if len(v) < 2:
        return [mean, float("nan"), float("nan")]
    half = float(t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return [mean, mean - half, mean + half]


# the fields of each pooled_paired entry, in order (seeds.json names them once)
POOLED_FIELDS = ("difference", "bootstrap_low", "bootstrap_high", "bootstrap_p", "t_low",
                 "t_high")


def pooled_paired(pairs: list[tuple[dict, dict]], *, resamples: int = 1000, seed: int = 0,
                  metrics=METRICS, level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [difference, low, high, p, t_low, t_high]} (`POOLED_FIELDS`) of ``other``
    minus ``reference`` pooled over seeds: ``pairs`` holds one (reference, other) per seed,
    each pair evaluated on that seed's split. The difference is the mean of the per-seed
    differences. Its interval is a two-stage bootstrap (Davison & Hinkley 1997, sec. 3.8):
    each resample draws seeds with replacement, then users within each drawn seed, so it
    carries the training variance between seeds as well as the users'. With few seeds the
    resampled seeds repeat a handful of values and that interval can be narrower than the
    seeds' spread: ``t_low, t_high`` is the t interval over the per-seed differences
    (`t_interval`), reported beside it. ``p``: two-sided bootstrap p-value of "no
    difference", 2 min(P(d <= 0), P(d >= 0)); its resolution is 2 / resamples (`p_text`)."""
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
        t_lo, t_hi = t_interval([p[m] for p in per_seed], level)[1:]
        if not len(dist):
            out[m] = [point, float("nan"), float("nan"), float("nan"), t_lo, t_hi]
            continue
        p = min(1.0, 2 * min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0))))
        out[m] = [point, float(np.percentile(dist, q)), float(np.percentile(dist, 100 - q)), p,
                  t_lo, t_hi]
    return out


def p_text(p: float, resamples: int, below: float | None = None) -> str:
    """A bootstrap p-value with its resolution: R resamples can only show a two-sided p in
    steps of 2 / R, so a p of 0 is written "< 2/R (R resamples)" - never "0.000". ``below``:
    the bound to state instead (a Holm-adjusted p of 0 is below its multiplier x 2/R)."""
    if p is None or not np.isfinite(p):
        return "–"
    if p == 0:
        return f"< {below if below is not None else 2 / resamples:.3g} ({resamples:,} resamples)"
    return f"{p:.3f}"


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
