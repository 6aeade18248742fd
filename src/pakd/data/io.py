"""Reading delimited text into raw string columns, with errors that point at the line.

All loaders go through `read_table`, so a missing file, a wrong delimiter, a wrong
encoding or a row with the wrong number of fields is reported the same way everywhere.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

_CANDIDATE_SEPS = [",", "\t", ";", "|", "::"]
_SEP_NAMES = {",": "','", "\t": "'\\t' (tab)", ";": "';'", "|": "'|'", "::": "'::'"}


def require_file(path: Path, *, hint: str) -> Path:
    if not path.is_file():
        raise DataError("file not found", file=path, fix=hint)
    return path


def read_table(path: Path, *, sep: str, names: list[str] | None = None, header: bool = True,
               encoding: str = "utf-8", min_columns: int = 1,
               sep_option: str = "--sep", quoted: bool = False) -> pd.DataFrame:
    """Read a delimited file as strings.

    names: column names for files without a header (MovieLens .dat / u.data).
    min_columns: fewer columns than this means the delimiter is wrong; the error names the
    delimiter the first line seems to use.
    quoted: honour double-quoted fields with any delimiter (spreadsheet exports); comma files
    always do. MovieLens' own formats never quote (a title may hold a lone quote).
    The index of the result is each row's offset from the first data line, so the file line
    of a row is ``index + first data line`` even when blank lines were skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path, fix="check the path and the file name")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"cannot decompress the file ({e})", file=path,
                            fix="download or gzip it again, or use the uncompressed file") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = _decode(raw, encoding, path)
    first = text.split("\n", 1)[0].rstrip("\r")
    if sep == "::":  # pandas' C parser takes one character only
        text = text.replace("::", "\x1f")
        csep = "\x1f"
    else:
        csep = sep
    ncols_first = len(_fields(first, sep, quoted=sep == "," or quoted))
    if ncols_first < min_columns:
        guess = _guess_sep(first, exclude=sep)
        fix = (f"the file looks {_SEP_NAMES.get(guess, repr(guess))}-separated: pass "
               f"{sep_option} {guess!r}" if guess else
               f"use a delimited file with at least {min_columns} columns")
        raise DataError(f"line has {ncols_first} column(s) with delimiter "
                        f"{_SEP_NAMES.get(sep, repr(sep))}; expected at least {min_columns}",
                        file=path, line=1, fix=fix)
    kw = dict(sep=csep, dtype=str, keep_default_na=False, na_values=[],
              skip_blank_lines=True, engine="c")
    if sep != "," and not quoted:
        kw["quoting"] = csv.QUOTE_NONE
    if names is not None:
        kw.update(header=None, names=names)
    elif not header:
        kw.update(header=None)
    try:
        df = pd.read_csv(io.StringIO(text), **kw)
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            raise DataError(f"row has {m.group(3)} fields where the file has {m.group(1)}",
                            file=path, line=int(m.group(2)),
                            fix="fix the row (an unquoted delimiter inside a value?) or delete it"
                            ) from None
        raise DataError(f"cannot parse the file: {e}", file=path,
                        fix="check the delimiter and quoting") from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=path, fix="point pakd at a file with data") from None
    if header and names is None:
        # " rating " from a spreadsheet is "rating"; a name twice is ambiguous (pandas would
        # quietly rename the second one "name.1")
        heads = [h.strip() for h in _fields(first, sep, quoted=True)]
        seen = set()
        for h in heads:
            if h in seen:
                raise DataError(f"column {h!r} appears twice in the header", file=path, line=1,
                                fix="rename or delete one of them")
            seen.add(h)
        df.columns = [str(c).strip() for c in df.columns]
    if names is not None and df.shape[1] > len(names):
        raise DataError(f"rows have more than the {len(names)} expected fields", file=path, line=1,
                        fix="check the delimiter")
    start = 0 if (names is not None or not header) else 1  # lines before the first data line
    if not isinstance(df.index, pd.RangeIndex):
        # pandas silently turns the extra leading fields of a too-long first row into an index
        phys = text.split("\n")
        line = next((i + 1 for i in range(start, len(phys)) if phys[i].strip()), start + 1)
        raise DataError(f"row has {df.shape[1] + df.index.nlevels} fields where the file has "
                        f"{df.shape[1]}", file=path, line=line,
                        fix="fix the row (an unquoted delimiter inside a value?) or delete it")
    _fix_index(df, text, start, csep)
    _check_short_rows(df, text, start, csep, quoted=sep == "," or quoted, path=path)
    return df


def _check_short_rows(df: pd.DataFrame, text: str, start: int, csep: str, *, quoted: bool,
                      path: Path) -> None:
    """pandas pads a row with too few fields with empty values; only rows holding an empty
    value can be short, so only those physical lines are re-counted."""
    if df.empty:
        return
    suspect = np.flatnonzero((df.to_numpy() == "").any(1))
    if not len(suspect):
        return
    phys = text.split("\n")
    for r in suspect:
        line = int(df.index[r]) + start
        if line >= len(phys):
            return   # a quoted value spans lines: line numbers are not reliable
        fields = _fields(phys[line].rstrip("\r"), csep, quoted=quoted)
        if len(fields) < df.shape[1]:
            raise DataError(f"row has {len(fields)} field(s) where the file has {df.shape[1]}",
                            file=path, line=line + 1,
                            fix="fill in the missing fields or delete the row")


def _fields(line: str, sep: str, *, quoted: bool) -> list[str]:
    """The fields of one line as the table reader splits them."""
    if len(sep) == 1:
        try:
            return next(csv.reader([line], delimiter=sep,
                                   quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE), [])
        except csv.Error:           # a stray carriage return or NUL inside the line
            pass
    return line.split(sep) if line else []


def _fix_index(df: pd.DataFrame, text: str, start: int, csep: str) -> None:
    """Set each row's index to its offset from the first data line (blank lines skipped)."""
    if len(df) != text.count("\n") + (not text.endswith("\n")) - start:
        # blank lines were skipped: keep each row's true line in the index
        ws = "".join(c for c in " \t\r\f\v" if c != csep)
        rows = [i - start for i, ln in enumerate(text.split("\n")) if i >= start and ln.strip(ws)]
        if len(rows) == len(df):  # else a quoted value spans lines: keep row order
            df.index = pd.Index(rows)


_WIDE_BOMS = {b"\xff\xfe\x00\x00": "utf-32", b"\x00\x00\xfe\xff": "utf-32",
              b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}


def _decode(raw: bytes, encoding: str, path: Path) -> str:
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}", file=path,
                        fix="pass --encoding with a Python codec name such as utf-8, latin-1 "
                            "or utf-16") from None
    wide = next((name for bom, name in _WIDE_BOMS.items() if raw.startswith(bom)), None)
    if wide and not encoding.startswith(wide):
        raise DataError(f"the file is {wide.upper()}-encoded (it starts with a {wide.upper()} "
                        f"byte-order mark), not {encoding}", file=path, line=1,
                        fix=f"pass --encoding {wide}, or re-save the file as UTF-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        other = "latin-1" if encoding == "utf-8" else "utf-8"
        raise DataError(f"byte 0x{raw[e.start]:02x} is not valid {encoding}",
                        file=path, line=line,
                        fix=f"pass --encoding {other} (MovieLens 100K/1M/10M files are latin-1), "
                            "or re-save the file as UTF-8") from None


def _guess_sep(line: str, exclude: str) -> str | None:
    best, best_n = None, 0
    for s in _CANDIDATE_SEPS:
        if s == exclude:
            continue
        n = line.count(s)
        if n > best_n:
            best, best_n = s, n
    return best
