"""Any user/item/rating table: CSV, TSV or Parquet, with column mapping and side tables.

The ratings file needs a user, an item and a rating column (names mapped with
``columns``); a timestamp is optional. Optional user and item feature tables are keyed by
the same IDs. A feature column's kind is inferred unless given: values containing the
multi-value separator (default ``|``) are multi-valued tokens, numeric columns with more
than 20 distinct values are bucketised numbers, anything else is categorical.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import Dataset, DuplicatePolicy, FeatureKind, clean_ratings, plain_integers
from .fast import _column_names, clean_fast
from ..limits import names_text, quote, require_input, short
from .io import check_fields, read_parquet, read_table

DEFAULT_COLUMNS = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
# MovieLens' own header (ratings.csv of every csv release): the most common one in the field
MOVIELENS_COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating",
                     "timestamp": "timestamp"}


def default_columns(path: Path, sep: str) -> dict[str, str]:
    """The column mapping of a file given without ``--columns``: ``user,item,rating
    [,timestamp]``, or MovieLens' ``userId,movieId,rating[,timestamp]`` when the header has
    those and not the plain names."""
    have = _column_names(path, sep, None, True) or []
    if "user" not in have and "item" not in have and \
            all(MOVIELENS_COLUMNS[r] in have for r in ("user", "item", "rating")):
        return dict(MOVIELENS_COLUMNS)
    return dict(DEFAULT_COLUMNS)


def _sep_for(path: Path, sep: str | None) -> str:
    if sep:
        return sep
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".tab", ".data")) else ","


def _read_any(path: Path, *, sep: str | None, encoding: str, min_columns: int) -> tuple[pd.DataFrame, int]:
    """Raw string frame and the line number of its first data row."""
    require_input(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df = read_parquet(path).to_pandas()
        df = df.reset_index(drop=True).apply(lambda c: c.map(_as_text))
        if len(df.columns):
            check_fields(df, path=path, first_line=1)
        return df, 1
    df = read_table(path, sep=_sep_for(path, sep), encoding=encoding, min_columns=min_columns,
                    quoted=True)
    return df, 2


def _as_text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v)


def load_table(path: str | Path, *, columns: dict[str, str] | None = None, sep: str | None = None,
               encoding: str = "utf-8", rating_scale: tuple[float, float] | None = None,
               duplicates: DuplicatePolicy = "error",
               user_features: str | Path | None = None, item_features: str | Path | None = None,
               user_key: str | None = None, item_key: str | None = None,
               feature_kinds: dict[str, FeatureKind] | None = None, multi_sep: str = "|",
               title_column: str | None = None, name: str | None = None) -> Dataset:
    """Load a ratings table (and optional feature tables) into a `Dataset`."""
    path = Path(path)
    base = DEFAULT_COLUMNS if columns else default_columns(path, _sep_for(path, sep))
    cols = {**base, **(columns or {})}
    fast = clean_fast(path, columns=cols, sep=_sep_for(path, sep), encoding=encoding,
                      scale=rating_scale, duplicates=duplicates,
                      optional=() if columns and "timestamp" in columns else ("timestamp",))
    ratings, scale = fast if fast is not None else _careful_ratings(
        path, cols, columns, sep=sep, encoding=encoding, rating_scale=rating_scale,
        duplicates=duplicates)
    kinds = feature_kinds or {}
    users = ufeat = items = ifeat = None
    if user_features:
        users, ufeat = _load_features(Path(user_features), key=user_key or cols["user"],
                                      ids=ratings["user"], encoding=encoding, sep=sep,
                                      kinds=kinds, multi_sep=multi_sep, title=None)
    if item_features:
        items, ifeat = _load_features(Path(item_features), key=item_key or cols["item"],
                                      ids=ratings["item"], encoding=encoding, sep=sep,
                                      kinds=kinds, multi_sep=multi_sep, title=title_column)
    return Dataset(name or path.stem, ratings, scale, users=users, items=items,
                   user_features=ufeat or {}, item_features=ifeat or {},
                   source={"ratings": str(path)})


def _careful_ratings(path: Path, cols: dict, columns: dict | None, *, sep, encoding,
                     rating_scale, duplicates):
    """Every field read as text, so any problem is named with its line."""
    raw, first_line = _read_any(path, sep=sep, encoding=encoding, min_columns=3)
    need = {k: cols[k] for k in ("user", "item", "rating")}
    missing = [f"{k}={v}" for k, v in need.items() if v not in raw.columns]
    if missing:
        raise DataError(
            f"column(s) {', '.join(short(v) for v in need.values() if v not in raw.columns)} "
            f"not found; the file has {names_text(raw.columns)}", file=path, line=1 if first_line == 2 else None,
            fix="map your column names, e.g. --columns user=userId,item=movieId,rating=rating")
    take = {k: raw[v] for k, v in need.items()}
    ts_col = cols.get("timestamp")
    if ts_col and ts_col in raw.columns:
        take["timestamp"] = raw[ts_col]
    elif columns and "timestamp" in columns:
        raise DataError(f"timestamp column {quote(ts_col)} not found; the file has "
                        f"{names_text(raw.columns)}",
                        file=path, line=1, fix="fix --columns timestamp=... or leave it out")
    return clean_ratings(pd.DataFrame(take), file=path, first_line=first_line,
                         scale=rating_scale, duplicates=duplicates)


def _load_features(path: Path, *, key: str, ids: pd.Series, encoding: str, sep: str | None,
                   kinds: dict[str, FeatureKind], multi_sep: str, title: str | None):
    raw, first_line = _read_any(path, sep=sep, encoding=encoding, min_columns=2)
    if key not in raw.columns:
        raise DataError(f"key column {quote(key)} not found; the file has "
                        f"{names_text(raw.columns)}",
                        file=path, line=1, fix="name the ID column with --user-key / --item-key")
    keys = raw[key].astype(str).str.strip()
    dup = keys.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"ID {short(keys.iloc[i])} appears twice in the feature table", file=path,
                        line=int(keys.index[i]) + first_line, fix="keep one row per ID")
    # Match the ID type the ratings use (the same rule: plain integers, else the text).
    if np.issubdtype(np.asarray(ids).dtype, np.integer):
        plain = plain_integers(keys)
        if not plain.all():
            i = int(np.flatnonzero(~plain.to_numpy())[0])
            raise DataError(f"ID {quote(keys.iloc[i])} is not written as an integer like the "
                            "ratings' IDs", file=path, line=int(keys.index[i]) + first_line,
                            fix="write it as the ratings file does, or delete the row")
        index = pd.Index(keys.astype(np.int64).to_numpy())
    else:
        index = pd.Index(keys.to_numpy(dtype=object))
    table = pd.DataFrame(index=index)
    feats: dict[str, FeatureKind] = {}
    for col in raw.columns:
        if col == key:
            continue
        if title and col == title:
            table["title"] = raw[col].to_numpy()
            continue
        vals = raw[col].astype(str).str.strip()
        kind = kinds.get(col) or _infer_kind(vals, multi_sep)
        if kind == "multi":
            table[col] = vals.map(lambda s: [t for t in s.split(multi_sep) if t]).to_numpy()
        elif kind == "numeric":
            table[col] = pd.to_numeric(vals, errors="coerce").to_numpy()
        else:
            table[col] = vals.replace("", None).to_numpy()
        feats[col] = kind
    return table, feats


def _infer_kind(vals: pd.Series, multi_sep: str) -> FeatureKind:
    if vals.str.contains(multi_sep, regex=False).any():
        return "multi"
    num = pd.to_numeric(vals.replace("", np.nan), errors="coerce")
    if num.notna().sum() == vals.ne("").sum() and num.nunique() > 20:
        return "numeric"
    return "categorical"
