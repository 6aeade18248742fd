"""The fast path for large rating files: typed columns read by pyarrow in a few seconds.

`read_table` reads every field as text so that any problem can be traced to its line;
for a 20M-row file that costs about a minute and several GB. Most large files are clean,
so ratings files are first read here with typed columns - IDs as text checked to be plain
integers (the rule `ids_from_text` applies) and cast to int64, ratings as float64, Unix
timestamps as int64 - by pyarrow's multi-threaded CSV reader, or from Parquet. Whenever
this path cannot vouch for the file (pyarrow missing, a row it cannot parse, an ID that
is not a plain integer, a date instead of Unix seconds, a multi-character delimiter), it
returns None and the caller takes the careful path, which finds and names the problem;
`clean_ratings` errors raised on a typed frame are re-raised from the careful path too,
so the line numbers in error messages never depend on which path read the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..limits import MAX_LINE_BYTES
from .dataset import _PLAIN_INT, clean_ratings
from .io import read_input_text_bytes, read_parquet

ROLES = ("user", "item", "rating", "timestamp")


def _arrow_table(path: Path, want: dict, *, sep: str, names, encoding: str, quoted: bool):
    """The wanted columns as an Arrow table (IDs as text, ratings float, timestamps int),
    or None for what only the careful reader handles (another encoding, a long delimiter)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    if path.suffix.lower() in (".parquet", ".pq"):
        return read_parquet(path, columns=list(want.values()))   # bounded
    if not encoding.lower().replace("-", "").replace("_", "") == "utf8":
        return None
    if sep == "::" and names is not None:    # ML-1M/10M: split on ':', skip the gaps
        names = [n for c in names for n in (c, f"_gap_{c}")][:-1]
        sep = ":"
    if len(sep) != 1:
        return None
    types = {want["user"]: pa.string(), want["item"]: pa.string(),
             want["rating"]: pa.float64()}
    if "timestamp" in want:
        types[want["timestamp"]] = pa.int64()
    source = path
    if path.suffix == ".gz":          # inflated here, bounded (pakd.limits.gunzip)
        source = pa.BufferReader(read_input_text_bytes(path))
    return pcsv.read_csv(
        source,
        read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 25),
        parse_options=pcsv.ParseOptions(delimiter=sep, quote_char='"' if quoted else False),
        convert_options=pcsv.ConvertOptions(column_types=types,
                                            include_columns=list(want.values()),
                                            strings_can_be_null=False,
                                            quoted_strings_can_be_null=False))


def _typed_column(arr, role: str):
    """A role's column in its type (int64 IDs from plain integers only, float64 ratings,
    integer timestamps), or None when the careful reader must look at it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if role in ("user", "item"):
        if pa.types.is_integer(arr.type):
            return arr.cast(pa.int64())
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            if not pc.all(pc.match_substring_regex(arr, f"^{_PLAIN_INT}$")).as_py():
                return None                 # text IDs, padding or leading zeros
            return pc.cast(arr, pa.int64())
        return None
    if role == "rating":
        if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
            return None
        return arr.cast(pa.float64())
    return arr if pa.types.is_integer(arr.type) else None   # timestamp: dates go the careful way


def typed_ratings(path: Path, *, columns: dict[str, str], sep: str = ",",
                  names: list[str] | None = None, encoding: str = "utf-8",
                  quoted: bool = True, optional: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """``user, item, rating[, timestamp]`` (int64, int64, float64, int64) of the columns
    ``columns`` maps each role to, or None when only the careful reader can tell what is
    wrong or what the file means. A role in ``optional`` whose column the file lacks is
    left out; ``names``: the column names of a file without a header."""
    try:
        import pyarrow as pa
        import pyarrow.compute  # noqa: F401  (the fast path needs pyarrow's compute and csv)
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return None
    path = Path(path)
    have = _column_names(path, sep, names, quoted)
    if have is None:
        return None
    want = {r: columns[r] for r in ROLES if columns.get(r)
            and not (r in optional and columns[r] not in have)}
    if any(c not in have for c in want.values()):
        return None
    try:
        table = _arrow_table(path, want, sep=sep, names=names, encoding=encoding, quoted=quoted)
    except (pa.ArrowException, OSError, KeyError, ValueError):
        return None
    if table is None:
        return None
    if table.num_rows == 0 or any(table.column(c).null_count for c in want.values()):
        return None
    out = {}
    for role, col in want.items():
        arr = _typed_column(table.column(col), role)
        if arr is None:
            return None
        out[role] = arr.to_numpy()
    df = pd.DataFrame(out)
    if "timestamp" in df:
        df["timestamp"] = df["timestamp"].astype(np.int64)
    return df


def clean_fast(path: Path, *, scale, duplicates, **read) -> tuple[pd.DataFrame, tuple] | None:
    """`clean_ratings` of the fast path's frame, or None: the file goes the careful way
    (which also gives any error its exact line)."""
    df = typed_ratings(path, **read)
    if df is None:
        return None
    try:
        return clean_ratings(df, file=path, first_line=1, scale=scale, duplicates=duplicates)
    except DataError:
        return None


def _column_names(path: Path, sep: str, names: list[str] | None, quoted: bool) -> list | None:
    """The file's column names as the careful reader sees them (stripped), or None."""
    if names is not None:
        return list(names)
    if len(sep) != 1:               # a header split on '::' goes the careful way
        return None
    import csv
    import gzip
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq
            return list(pq.read_schema(path).names)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            line = f.readline(MAX_LINE_BYTES + 1)     # never more: a bomb may have no newline
        if len(line) > MAX_LINE_BYTES:
            return None
        line = line.rstrip("\r\n")
    except Exception:  # noqa: BLE001 - damaged, not text, not Parquet: the careful path says
        return None
    if not quoted:
        return line.split(sep)
    fields = next(csv.reader([line], delimiter=sep), [])
    # a header the careful reader would strip or reject goes the careful way
    if any(f != f.strip() for f in fields) or len(set(fields)) != len(fields):
        return None
    return fields
