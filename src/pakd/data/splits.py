"""Seeded train/valid/test splits, written to ``split.csv`` so every stage (and any outside
tool) evaluates on the identical rows.

Methods
- ``user_ratio`` (default): each user's ratings shuffled and cut by ratio (80/10/10).
- ``global_ratio``: all ratings shuffled and cut by ratio.
- ``temporal``: one global time cut: the oldest ratings train, then valid, then test.
- ``user_temporal``: per user, ratings ordered by (timestamp, item ID) - equal timestamps
  are broken by the item ID, smaller first, so the split does not depend on the seed or
  on row order; the last ``round(n * test share)`` go to test and the
  ``round(n * valid share)`` before them to valid (halves round up). A user with one
  rating is train only (the train floor below).
- ``user_last_k``: each user's last k ratings (by time) test, the k before valid.
- ``leave_one_out``: ``user_last_k`` with k = 1.

Cold rule (one for every method): a valid or test rating whose user or item has no train
rating is dropped - no model can score it from collaborative data - and the number dropped
is reported. Every user keeps at least one train rating.

Time-ordered methods (``TIME_ORDERED``) need real timestamps: ratings without any (a table
without a timestamp column reads as all 0) are refused, as is a time cut at a quantile
outside (0, 1). Under them the side features built from events (the tags of the ml-latest
releases) only see events up to the train part's cut: `Split.train_cut`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..errors import DataError, PakdError
from .dataset import ids_from_text

PARTS = ("train", "valid", "test")
SPLIT_CSV, SPLIT_JSON = "split.csv", "split.json"    # a run directory's split files
METHODS = ("user_ratio", "global_ratio", "temporal", "user_temporal", "user_last_k",
           "leave_one_out")
# methods that put each user's (or everyone's) later ratings after the train part
TIME_ORDERED = ("temporal", "user_temporal", "user_last_k", "leave_one_out")
# the stated rule for side-feature events (tags) under a time-ordered split
EVENT_RULE = {"temporal": "side-feature events (tags) at or before the latest train rating's "
                          "time only",
              "per_user": "side-feature events (tags) at or before their author's latest train "
                          "rating only; events by users without ratings are left out"}


@dataclass
class Split:
    frame: pd.DataFrame            # user, item, rating, timestamp, part
    summary: dict = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["part"] == name]

    def train_cut(self) -> int | pd.Series | None:
        """Up to when side-feature events may be used: None for a random split (no time
        order to respect); the latest train rating's timestamp for the global ``temporal``
        cut; for a per-user time split, a Series user -> that user's latest train rating's
        timestamp (an event by a user without one is later than every cut)."""
        method = self.summary.get("method")
        if method not in TIME_ORDERED:
            return None
        train = self.part("train")
        if method == "temporal":
            return int(train["timestamp"].max())
        return train.groupby("user")["timestamp"].max().astype(np.int64)

    def write(self, run_dir: str | Path) -> Path:
        """``RUN/split.csv`` and ``RUN/split.json``; returns the CSV's path."""
        csv, summary = Path(run_dir) / SPLIT_CSV, Path(run_dir) / SPLIT_JSON
        atomic_write_text(csv, self.frame.to_csv(index=False, float_format="%g",
                                                 lineterminator="\n"))
        atomic_write_text(summary, json.dumps(self.summary, indent=2) + "\n")
        return csv


def _global_parts(n: int, te: float, va: float, rng) -> np.ndarray:
    """global_ratio: a seeded permutation of all ratings cut into test, valid, train."""
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    order = rng.permutation(n)
    n_te, n_va = int(round(n * te)), int(round(n * va))
    part[order[:n_te]] = 2
    part[order[n_te:n_te + n_va]] = 1
    return part


def _temporal_parts(r: pd.DataFrame, tr: float, va: float) -> np.ndarray:
    """temporal: the oldest share trains, the next validates, the newest tests."""
    n = len(r)
    part = np.zeros(n, dtype=np.int8)
    order = np.lexsort((np.arange(n), r["timestamp"].to_numpy()))
    n_tr, n_va = int(round(n * tr)), int(round(n * va))
    part[order[n_tr:n_tr + n_va]] = 1
    part[order[n_tr + n_va:]] = 2
    return part


def _user_temporal_parts(r: pd.DataFrame, te: float, va: float) -> np.ndarray:
    """user_temporal: each user's newest ratings test, the ones before validate."""
    n = len(r)
    part = np.zeros(n, dtype=np.int8)
    users = pd.factorize(r["user"])[0]
    items = pd.factorize(r["item"], sort=True)[0]
    # each user's ratings oldest first, equal timestamps by item ID; rank from the end
    order = np.lexsort((items, r["timestamp"].to_numpy(), users))
    counts = np.bincount(users)
    ends = np.cumsum(counts)
    from_end = np.empty(n, dtype=np.int64)     # 0 = the user's newest rating
    from_end[order] = np.repeat(ends, counts) - 1 - np.arange(n)
    cnt = counts[users]
    n_te = np.floor(cnt * te + 0.5).astype(np.int64)
    n_va = np.floor(cnt * va + 0.5).astype(np.int64)
    n_va, n_te = _train_floor(cnt, n_va, n_te)
    part[from_end < n_te] = 2
    part[(from_end >= n_te) & (from_end < n_te + n_va)] = 1
    return part


def _per_user_parts(r: pd.DataFrame, method: str, k: int, te: float, va: float,
                    rng) -> np.ndarray:
    """user_ratio (a seeded share of each user's ratings), user_last_k and leave_one_out
    (each user's k newest, equal timestamps in seeded order) to test, then to valid."""
    n = len(r)
    part = np.zeros(n, dtype=np.int8)
    users = pd.factorize(r["user"])[0]
    if method == "user_ratio":
        key = rng.random(n)
    else:
        if k < 1:
            raise PakdError("user_last_k needs k >= 1")
        # newest first; ties broken by a seeded random key so equal timestamps are fair
        key = -r["timestamp"].to_numpy().astype(np.float64) + rng.random(n) * 1e-3
    order = np.lexsort((key, users))
    pos = np.empty(n, dtype=np.int64)
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos[order] = np.arange(n) - np.repeat(starts, counts)
    cnt = counts[users]
    if method == "user_ratio":
        n_te = np.round(cnt * te).astype(np.int64)
        n_va = np.round(cnt * va).astype(np.int64)
    else:
        n_te = np.full(n, k)
        n_va = np.full(n, k if va > 0 or method == "leave_one_out" else 0)
    n_va, n_te = _train_floor(cnt, n_va, n_te)
    part[pos < n_te] = 2
    part[(pos >= n_te) & (pos < n_te + n_va)] = 1
    return part


def make_split(ratings: pd.DataFrame, *, method: str = "user_ratio",
               ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), k: int = 1,
               seed: int = 0, source: str | Path | None = None) -> Split:
    """Assign each rating to train/valid/test by ``method`` (see module doc). ``source``
    (the ratings file) is named in the errors."""
    if method not in METHODS:
        raise PakdError(f"unknown split method {method!r}; choose one of {', '.join(METHODS)}")
    r = ratings.reset_index(drop=True)
    if r.empty:
        raise DataError("no ratings to split", fix="check the dataset and its filters")
    tr, va, te = ratios
    if min(ratios) < 0 or abs(tr + va + te - 1) > 1e-6 or tr <= 0:
        raise PakdError(f"split ratios {ratios} must be non-negative, sum to 1, with train > 0")
    if method in TIME_ORDERED:
        _check_time_order(r, method, ratios, source)
    rng = np.random.default_rng(seed)
    if method == "leave_one_out":
        k = 1
    if method == "global_ratio":
        part = _global_parts(len(r), te, va, rng)
    elif method == "temporal":
        part = _temporal_parts(r, tr, va)
    elif method == "user_temporal":
        part = _user_temporal_parts(r, te, va)
    else:
        part = _per_user_parts(r, method, k, te, va, rng)
    out = _finish(r, part, method=method, ratios=ratios, k=k, seed=seed)
    if method == "user_temporal":
        out.summary["tie_rule"] = ("each user's ratings ordered by timestamp, then item ID "
                                   "(smaller first); the newest go to test, then valid")
        out.summary["single_rating_rule"] = "a user with one rating is train only"
    if method in TIME_ORDERED:
        out.summary["event_rule"] = EVENT_RULE["temporal" if method == "temporal"
                                               else "per_user"]
    return out


def _train_floor(cnt: np.ndarray, n_va: np.ndarray, n_te: np.ndarray):
    """Every user keeps at least one train rating: shrink valid, then test."""
    over = np.maximum(n_te + n_va - (cnt - 1), 0)
    cut_va = np.minimum(over, n_va)
    return n_va - cut_va, n_te - (over - cut_va)


def _check_time_order(r: pd.DataFrame, method: str, ratios, source) -> None:
    """A time-ordered split needs timestamps, and cuts strictly inside (0, 1)."""
    ts = r["timestamp"].to_numpy()
    if not (ts != 0).any():
        raise DataError(
            f"split {method!r} orders ratings by time, but the ratings have no timestamps "
            "(every one is missing or 0)", file=source,
            fix="give the file a timestamp column (a table's is mapped with --columns "
                "timestamp=COLUMN), or choose a random split: --split user_ratio")
    if method not in ("temporal", "user_temporal"):    # user_last_k cuts by count (k)
        return
    tr, va, te = ratios
    cuts = {"train": tr, "train+valid": tr + va}
    bad = {k: v for k, v in cuts.items() if not 0 < v < 1 - 1e-9}
    if bad:
        what = ", ".join(f"{k} at quantile {v:g}" for k, v in bad.items())
        raise PakdError(f"split {method!r}: the time cuts must lie strictly between 0 and 1 "
                        f"(the shares {list(ratios)} put {what}).\nFix: give a test share "
                        "above 0, e.g. --split-ratios 0.8,0.1,0.1")


def _finish(r: pd.DataFrame, part: np.ndarray, **meta) -> Split:
    train = part == 0
    train_users = set(pd.unique(r["user"][train]))
    train_items = set(pd.unique(r["item"][train]))
    cold = ~train & ~(r["user"].isin(train_users) & r["item"].isin(train_items)).to_numpy()
    labels = np.array(PARTS, dtype=object)[part]
    frame = r.assign(part=labels)[~cold].reset_index(drop=True)
    frame = frame[["user", "item", "rating", "timestamp", "part"]]
    if (frame["part"] == "train").sum() == 0:
        raise DataError("the split left no training ratings", fix="use other split ratios")
    counts = frame["part"].value_counts()
    summary = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in meta.items()},
        "rows": {p: int(counts.get(p, 0)) for p in PARTS},
        "users": int(frame["user"].nunique()),
        "items": int(frame["item"].nunique()),
        "cold_rule": "valid/test ratings whose user or item has no train rating are dropped",
        "cold_dropped": {p: int((cold & (labels == p)).sum()) for p in ("valid", "test")},
    }
    return Split(frame, summary)


def read_split(run_dir: str | Path) -> Split:
    """Load ``RUN/split.csv`` (and its summary) written by `Split.write`."""
    path = Path(run_dir) / SPLIT_CSV
    if not path.is_file():
        raise DataError("no split in this run directory", file=path,
                        fix=f"create one with `pakd data split --out {run_dir}` or `pakd run`")
    frame = pd.read_csv(path, dtype={"user": str, "item": str, "part": str},
                        keep_default_na=False)
    for col in ("user", "item"):   # the loaders' rule, so the IDs read back unchanged
        if col in frame.columns:
            frame[col] = ids_from_text(frame[col])
    missing = {"user", "item", "rating", "timestamp", "part"} - set(frame.columns)
    if missing:
        raise DataError(f"split.csv lacks columns {sorted(missing)}", file=path, line=1,
                        fix="re-create the split with `pakd data split`")
    bad = ~frame["part"].isin(PARTS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"part {frame['part'].iloc[i]!r} is not train/valid/test", file=path,
                        line=i + 2, fix="re-create the split with `pakd data split`")
    frame["rating"] = frame["rating"].astype(np.float32)
    summary = Path(run_dir) / SPLIT_JSON
    return Split(frame, json.loads(summary.read_text()) if summary.is_file() else {})
