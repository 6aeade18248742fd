"""The in-memory form of a rating dataset, and the checks every loader shares.

A `Dataset` holds ratings with their *original* IDs plus optional user and item side
tables. Loaders (MovieLens releases, generic tables) parse files into raw string columns
and hand them to `clean_ratings`, which turns malformed rows into a `DataError` naming the
file, the line and the fix. Nothing here writes to the user's files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from ..limits import MAX_TIMESTAMP_CHARS, quote, short

FeatureKind = Literal["categorical", "multi", "numeric"]
DuplicatePolicy = Literal["error", "first", "last", "mean"]


@dataclass
class Dataset:
    """Ratings with original IDs plus side information.

    ratings: columns ``user, item, rating, timestamp`` (timestamp in Unix seconds, 0 when
        the source has none), one row per (user, item).
    users / items: side tables indexed by the original ID; ``user_features`` and
        ``item_features`` say which of their columns are model fields and of which kind
        (categorical, multi = list of tokens, numeric = bucketised later).
    items may carry a ``title`` column used for display only.
    tagged_items: items that received a tag but may have no rating (GroupLens counts them).
    tag_events: the tag applications (``user, item, tag, timestamp``) the ``tags`` item field
        is built from, with ``tags_top_n``; kept so that a time-ordered split can rebuild the
        field from the events before its cut (`pakd.data.movielens.tags_as_of`).
    """

    name: str
    ratings: pd.DataFrame
    rating_scale: tuple[float, float]
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    user_features: dict[str, FeatureKind] = field(default_factory=dict)
    item_features: dict[str, FeatureKind] = field(default_factory=dict)
    tagged_items: np.ndarray | None = None
    tag_events: pd.DataFrame | None = None
    tags_top_n: int = 0
    source: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_ratings(self) -> int:
        return len(self.ratings)

    def info(self) -> dict:
        """Counts and fields, the content of `pakd data info`.

        ``items`` follows GroupLens's own definition for the ml-latest releases: items with
        at least one rating or tag application. ``rated_items`` and ``catalogue_items`` (rows
        of the item file) are given beside it.
        """
        r = self.ratings
        n_users = int(r["user"].nunique())
        rated = pd.unique(r["item"])
        interacted = set(rated.tolist())
        if self.tagged_items is not None:
            interacted |= set(np.asarray(self.tagged_items).tolist())
        hist = r["rating"].value_counts().sort_index()
        info = {
            "dataset": self.name,
            "ratings": int(len(r)),
            "users": n_users,
            "items": len(interacted),
            "rated_items": int(len(rated)),
            "catalogue_items": int(len(self.items)) if self.items is not None else int(len(rated)),
            "density": float(len(r) / max(1, n_users * len(rated))),
            "rating_scale": [float(self.rating_scale[0]), float(self.rating_scale[1])],
            "rating_mean": float(r["rating"].mean()) if len(r) else float("nan"),
            "rating_histogram": {_fmt(k): int(v) for k, v in hist.items()},
            "time_range": _time_range(r["timestamp"]),
            "fields": field_summary(self),
            "source": dict(self.source),
        }
        if self.notes:
            info["notes"] = list(self.notes)
        return info


def _fmt(x: float) -> str:
    return f"{x:g}"


def _time_range(ts: pd.Series) -> list[str] | None:
    ts = ts[ts > 0]
    if ts.empty:
        return None
    lo, hi = pd.to_datetime([ts.min(), ts.max()], unit="s", utc=True)
    return [lo.strftime("%Y-%m-%d"), hi.strftime("%Y-%m-%d")]


def field_summary(ds: Dataset) -> list[dict]:
    """The model fields this dataset offers: IDs first, then user and item side fields."""
    out = [
        {"name": "user_id", "side": "user", "kind": "categorical",
         "cardinality": int(ds.ratings["user"].nunique())},
        {"name": "item_id", "side": "item", "kind": "categorical",
         "cardinality": int(ds.ratings["item"].nunique())},
    ]
    for side, table, feats in (("user", ds.users, ds.user_features),
                               ("item", ds.items, ds.item_features)):
        for name, kind in feats.items():
            col = table[name]
            if kind == "multi":
                card = len({t for toks in col for t in toks})
            else:
                card = int(col.nunique(dropna=True))
            out.append({"name": name, "side": side, "kind": kind, "cardinality": card})
    return out


# ----------------------------------------------------------------------------- checks

def _numeric_ratings(rating_str: pd.Series, *, file, lines: np.ndarray) -> pd.Series:
    """The ratings as numbers; the first missing, non-numeric, infinite or float32-
    overflowing one stops with its file line."""
    rating = pd.to_numeric(rating_str, errors="coerce")
    bad = rating.isna().to_numpy() | ~np.isfinite(rating.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        val = rating_str.iloc[i]
        what = ("missing rating" if (pd.isna(val) or str(val).strip() == "")
                else f"rating {quote(val)} is not a number")
        raise DataError(what, file=file, line=int(lines[i]),
                        fix="correct the rating or delete the row (pakd never edits your files)")
    huge = (rating.abs() > np.finfo(np.float32).max).to_numpy()   # would become inf
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise DataError(f"rating {quote(rating_str.iloc[i])} is too large to be a rating",
                        file=file, line=int(lines[i]),
                        fix="correct the rating or delete the row (pakd never edits your files)")
    return rating


def clean_ratings(raw: pd.DataFrame, *, file: str | Path, first_line: int,
                  scale: tuple[float, float] | None, duplicates: DuplicatePolicy = "error",
                  ) -> tuple[pd.DataFrame, tuple[float, float]]:
    """Validate raw string columns ``user, item, rating[, timestamp]`` into typed ratings.

    ``first_line`` is the file line of the first data row (2 with a header); ``raw``'s index
    is each row's offset from it (as `read_table` returns it, blank lines skipped). Raises
    `DataError` on the first bad row; returns the clean frame and the rating scale (given,
    or the observed min/max when ``scale`` is None).
    """
    if raw.empty:
        raise DataError("the ratings table has no data rows", file=file,
                        fix="point pakd at a file that holds ratings")
    lines = raw.index.to_numpy(dtype=np.int64) + first_line

    for col in ("user", "item"):
        vals = raw[col]
        if pd.api.types.is_integer_dtype(vals):      # typed by the fast path
            continue
        bad = vals.isna() | (vals.astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"empty {col} ID", file=file, line=int(lines[i]),
                            fix=f"fill in the {col} ID or delete the row")

    rating = _numeric_ratings(raw["rating"], file=file, lines=lines)
    rating = rating.astype(np.float32)
    if scale is None:
        _check_inferable_scale(rating, file=file, lines=lines)
        scale = (float(rating.min()), float(rating.max()))
    lo, hi = scale
    out = ((rating < lo) | (rating > hi)).to_numpy()
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise DataError(f"rating {rating.iloc[i]:g} is outside the rating scale [{lo:g}, {hi:g}]",
                        file=file, line=int(lines[i]),
                        fix="correct the row, or set the scale with --rating-min/--rating-max "
                            "if your data uses another one")

    if "timestamp" in raw.columns:
        ts = _parse_timestamps(raw["timestamp"], file=file, lines=lines)
    else:
        ts = np.zeros(len(raw), dtype=np.int64)

    df = pd.DataFrame({
        "user": ids_from_text(raw["user"]),
        "item": ids_from_text(raw["item"]),
        "rating": rating.to_numpy(),
        "timestamp": ts,
    })
    df = _resolve_duplicates(df, lines, file=file, policy=duplicates)
    return df.reset_index(drop=True), (float(lo), float(hi))


_SCALE_FIX = "correct the row, or give the rating scale with --rating-min/--rating-max"


def _check_inferable_scale(rating: pd.Series, *, file, lines) -> None:
    """Without a given scale, the scale is the observed range - but only when that range
    looks like a rating scale: no negative ratings, and on a grid of few distinct values
    (stars, points) no extreme value detached from the rest by more than three grid steps
    (a 50 among 0.5-5 stars is a typo, not the top of the scale). Continuous ratings (more
    than 50 distinct values) are only checked for sign."""
    vals = rating.to_numpy()
    if (vals < 0).any():
        i = int(np.flatnonzero(vals < 0)[0])
        raise DataError(f"rating {vals[i]:g} is negative, so the rating scale cannot be "
                        "taken from the data", file=file, line=int(lines[i]), fix=_SCALE_FIX)
    grid = np.unique(vals)
    if not 3 <= len(grid) <= 50:
        return
    gaps = np.diff(grid)
    step = float(np.median(gaps))
    for end, gap, rest in ((grid[0], gaps[0], grid[1:]), (grid[-1], gaps[-1], grid[:-1])):
        if gap > 3 * step:
            i = int(np.flatnonzero(vals == end)[0])
            raise DataError(f"rating {end:g} lies far outside the other ratings "
                            f"({rest[0]:g}..{rest[-1]:g} in steps of about {step:g})",
                            file=file, line=int(lines[i]), fix=_SCALE_FIX)


_PLAIN_INT = r"-?(?:0|[1-9][0-9]{0,17})"   # no sign tricks, no leading zeros, < 10^18


def plain_integers(text: pd.Series) -> pd.Series:
    """Which (stripped) values are written as plain integers that fit int64, so that the
    integer maps back to exactly that text."""
    return text.str.fullmatch(_PLAIN_INT)


def ids_from_text(col: pd.Series) -> np.ndarray:
    """IDs as integers only when every value is written as a plain integer that fits int64
    (so the mapping back to text is exact), else as the stripped strings themselves: "007"
    and "7", "1.0" and "1", "1e3" and "1000" stay distinct, and huge IDs never wrap.
    Integer columns (the fast path checked their text) pass through."""
    if pd.api.types.is_integer_dtype(col):
        return col.to_numpy(np.int64)
    s = col.astype(str).str.strip()
    if len(s) and plain_integers(s).all():
        return s.astype(np.int64).to_numpy()
    return s.to_numpy(dtype=object)


def _parse_timestamps(col: pd.Series, *, file, lines) -> np.ndarray:
    """Unix seconds, or dates (any mix of the two); the first value that is neither stops."""
    if pd.api.types.is_integer_dtype(col):           # typed by the fast path
        text, num = col, col
    else:
        text = col.astype(str).str.strip()
        # no date or clock reading is long; a long digit run would cost the date parser
        # (dateutil, under pandas' mixed formats) time quadratic in its length
        long = (text.str.len() > MAX_TIMESTAMP_CHARS).to_numpy()
        if long.any():
            i = int(np.flatnonzero(long)[0])
            raise DataError(f"timestamp {quote(text.iloc[i])} is longer than any date or Unix "
                            f"time (over {MAX_TIMESTAMP_CHARS} characters)", file=file,
                            line=int(lines[i]), fix="write Unix seconds or an ISO date such as "
                            "2018-09-24, or check the delimiter")
        num = pd.to_numeric(text, errors="coerce")
    wild = (num.notna() & ~(num.abs() <= 1e15)).to_numpy()   # inf, or past any clock
    if wild.any():
        i = int(np.flatnonzero(wild)[0])
        raise DataError(f"timestamp {quote(text.iloc[i])} is out of range for Unix seconds",
                        file=file, line=int(lines[i]),
                        fix="write Unix seconds or an ISO date such as 2018-09-24")
    if num.notna().all():
        return num.astype(np.int64).to_numpy()
    other = num.isna().to_numpy()
    dt = pd.to_datetime(text[other], errors="coerce", utc=True, format="mixed")
    bad = np.zeros(len(text), bool)
    bad[other] = dt.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = ("missing timestamp" if text.iloc[i] == ""
                else f"timestamp {quote(text.iloc[i])} is neither Unix seconds nor a date")
        raise DataError(what, file=file, line=int(lines[i]),
                        fix="write Unix seconds or an ISO date such as 2018-09-24, "
                            "or drop the timestamp column mapping")
    # the unit of dt depends on the pandas version and the strings (ns, us, s): seconds, in
    # which any parsed date fits (year 1 overflowed nanoseconds)
    out = num.fillna(0).astype(np.int64).to_numpy().copy()
    secs = dt.dt.as_unit("s")
    out[other] = ((secs - pd.Timestamp(0, tz="UTC").as_unit("s")) // pd.Timedelta(seconds=1)
                  ).to_numpy(np.int64)
    return out


def _resolve_duplicates(df: pd.DataFrame, lines: np.ndarray, *, file, policy: str) -> pd.DataFrame:
    """Apply the duplicate (user, item) rule.

    error (default): stop at the first repeated pair, naming both lines.
    first / last: keep the earliest / latest rating by timestamp (file order breaks ties).
    mean: average the ratings, keep the latest timestamp.
    """
    dup = df.duplicated(["user", "item"], keep=False).to_numpy()
    if not dup.any():
        return df
    if policy == "error":
        first_dup = df.duplicated(["user", "item"], keep="first").to_numpy()
        j = int(np.flatnonzero(first_dup)[0])
        u, it = df.at[j, "user"], df.at[j, "item"]
        same = np.flatnonzero(((df["user"] == u) & (df["item"] == it)).to_numpy())
        raise DataError(
            f"user {short(u)} rated item {short(it)} more than once (also on line {int(lines[same[0]])})",
            file=file, line=int(lines[j]),
            fix="remove the repeated rows, or choose a rule with --duplicates first|last|mean")
    df = df.assign(_order=np.arange(len(df)))
    if policy in ("first", "last"):
        df = df.sort_values(["timestamp", "_order"], kind="stable")
        df = df.drop_duplicates(["user", "item"], keep=policy).sort_values("_order")
    elif policy == "mean":
        g = df.groupby(["user", "item"], sort=False)
        df = g.agg(rating=("rating", "mean"), timestamp=("timestamp", "max"),
                   _order=("_order", "min")).reset_index().sort_values("_order")
        df["rating"] = df["rating"].astype(np.float32)
    else:  # pragma: no cover - guarded by config validation
        raise ValueError(policy)
    return df.drop(columns="_order")


def filter_min_counts(ds: Dataset, min_user: int, min_item: int, *, file: str) -> Dataset:
    """Drop users/items with fewer ratings than asked (repeated until stable)."""
    r = ds.ratings
    if min_user <= 1 and min_item <= 1:
        return ds
    while True:
        n = len(r)
        if min_item > 1:
            r = r[r.groupby("item")["item"].transform("size") >= min_item]
        if min_user > 1:
            r = r[r.groupby("user")["user"].transform("size") >= min_user]
        if len(r) == n:
            break
    if r.empty:
        raise DataError(
            f"no ratings are left after keeping users with >= {min_user} and items with "
            f">= {min_item} ratings", file=file,
            fix="lower --min-user-ratings / --min-item-ratings")
    ds.notes.append(f"filtered to users with >= {min_user} and items with >= {min_item} ratings: "
                    f"{len(ds.ratings) - len(r)} ratings dropped")
    ds.ratings = r.reset_index(drop=True)
    return ds
