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

from ..errors import DataError, LimitError, PakdError
from ..limits import (INFLATE_FLOOR, INFLATE_RATIO, MAX_FIELD_CHARS, check_lines, gunzip, inflate_cap, input_problem, quote,
                      read_input, require_input, size_text)

_CANDIDATE_SEPS = [",", "\t", ";", "|", "::"]
_SEP_NAMES = {",": "','", "\t": "'\\t' (tab)", ";": "';'", "|": "'|'", "::": "'::'"}


def require_file(path: Path, *, hint: str) -> Path:
    problem = input_problem(path)
    if problem is not None:
        if problem.problem == "file not found":
            raise DataError("file not found", file=path, fix=hint)
        raise problem
    return path


def read_input_text_bytes(path: Path) -> bytes:
    """The bytes of a delimited file, inflated (bounded: `pakd.limits.gunzip`) when it is
    gzip-compressed, without a UTF-8 byte-order mark; an empty file is refused here."""
    raw = read_input(path)
    if path.suffix == ".gz":
        if not raw:
            raise DataError("the file is empty (0 bytes; not even a gzip header)", file=path,
                            fix="download or gzip it again, or use the uncompressed file")
        raw = gunzip(raw, path)
        if _blank(raw):
            raise DataError("the file is empty once decompressed", file=path,
                            fix="point pakd at a file with data")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if _blank(raw):
        raise DataError("the file is empty", file=path, fix="point pakd at a file with data")
    return raw


def read_parquet(path: Path, columns: list[str] | None = None):
    """A Parquet file as a pyarrow Table (dictionary columns decoded), read a batch at a
    time and refused (`LimitError`) once the decoded columns outgrow
    `pakd.limits.inflate_cap` of the file (a few KB of run-length encoded values can decode
    to gigabytes); a file pyarrow cannot read is a `DataError`."""
    path = require_input(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow", file=path,
                        fix="pip install 'pakd[parquet]' (or pyarrow)") from None
    cap = inflate_cap(path.stat().st_size)
    try:
        pf = pq.ParquetFile(path)
        declared = sum(pf.metadata.row_group(i).total_byte_size
                       for i in range(pf.metadata.num_row_groups))
        if declared > cap:
            raise LimitError(f"the Parquet file declares {size_text(declared)} of data in "
                             f"{size_text(path.stat().st_size)}: refused as a possible "
                             "decompression bomb", file=path, fix=_PARQUET_FIX)
        batches, total = [], 0
        for b in pf.iter_batches(batch_size=8192, columns=columns):
            # dictionary columns decoded: one short index per row may stand for a long value
            # (2 MB of indices to one 1 KB title is 2 GB once every row holds its own copy)
            b = pa.RecordBatch.from_arrays(
                [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c
                 for c in b.columns], names=b.schema.names)
            total += b.nbytes
            if total > cap:
                raise LimitError(f"the Parquet file decodes to more than {size_text(cap)} "
                                 f"from {size_text(path.stat().st_size)}: refused as a "
                                 "possible decompression bomb", file=path, fix=_PARQUET_FIX)
            batches.append(b)
        if batches:
            return pa.Table.from_batches(batches)
        empty = pf.schema_arrow.empty_table()
        return empty if columns is None else empty.select(columns)
    except PakdError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a file problem here
        raise DataError(f"cannot read Parquet: {quote(str(e), 200)}", file=path,
                        fix="check that the file is a Parquet table") from None


_PARQUET_FIX = ("write it without the extreme compression, or as CSV, if it is genuine "
                f"(pakd's limit: {INFLATE_RATIO} times the file's size, at least "
                f"{size_text(INFLATE_FLOOR)})")


def _blank(raw: bytes) -> bool:
    return re.search(rb"[^\s\x00]", raw) is None     # stops at the first character


def _check_columns(first: str, sep: str, quoted: bool, min_columns: int, sep_option: str,
                   path: Path) -> None:
    """Too few columns on the first line: the delimiter is wrong; name the likely one."""
    ncols_first = len(_fields(first, sep, quoted=sep == "," or quoted))
    if ncols_first < min_columns:
        guess = _guess_sep(first, exclude=sep)
        fix = (f"the file looks {_SEP_NAMES.get(guess, repr(guess))}-separated: pass "
               f"{sep_option} {guess!r}" if guess else
               f"use a delimited file with at least {min_columns} columns")
        raise DataError(f"line has {ncols_first} column(s) with delimiter "
                        f"{_SEP_NAMES.get(sep, repr(sep))}; expected at least {min_columns}",
                        file=path, line=1, fix=fix)


def _parse(text: str, path: Path, *, csep: str, quote_none: bool, names, header: bool):
    """pandas' C parser over the decoded text, its errors turned into ones naming the
    file and line."""
    kw = dict(sep=csep, dtype=str, keep_default_na=False, na_values=[],
              skip_blank_lines=True, engine="c")
    if quote_none:
        kw["quoting"] = csv.QUOTE_NONE
    if names is not None:
        kw.update(header=None, names=names)
    elif not header:
        kw.update(header=None)
    try:
        return pd.read_csv(io.StringIO(text), **kw)
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


def _check_header(df: pd.DataFrame, first: str, sep: str, path: Path) -> None:
    """Header names stripped (" rating " from a spreadsheet is "rating"); a name twice is
    ambiguous (pandas would quietly rename the second one "name.1")."""
    heads = [h.strip() for h in _fields(first, sep, quoted=True)]
    seen = set()
    for h in heads:
        if h in seen:
            raise DataError(f"column {quote(h)} appears twice in the header", file=path, line=1,
                            fix="rename or delete one of them")
        seen.add(h)
    df.columns = [str(c).strip() for c in df.columns]


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
    raw = read_input_text_bytes(path)
    longest = check_lines(raw, path)
    text = _decode(raw, encoding, path)
    nl = text.find("\n")
    first = (text if nl < 0 else text[:nl]).rstrip("\r")
    if sep == "::":  # pandas' C parser takes one character only
        text = text.replace("::", "\x1f")
        csep = "\x1f"
    else:
        csep = sep
    _check_columns(first, sep, quoted, min_columns, sep_option, path)
    df = _parse(text, path, csep=csep, quote_none=sep != "," and not quoted, names=names,
                header=header)
    if header and names is None:
        _check_header(df, first, sep, path)
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
    if longest > MAX_FIELD_CHARS:           # only then can a field be longer than the cap
        check_fields(df, path=path, first_line=start + 1)
    return df


def check_fields(df: pd.DataFrame, *, path: Path, first_line: int) -> None:
    """A `LimitError` for the first value longer than MAX_FIELD_CHARS (a rating table's
    values are IDs, numbers, dates, titles and tag lists: far shorter)."""
    for col in df.columns:
        if df[col].dtype != object and not pd.api.types.is_string_dtype(df[col]):
            continue
        lens = df[col].astype(str).str.len().to_numpy()
        if len(lens) and lens.max() > MAX_FIELD_CHARS:
            i = int(np.argmax(lens > MAX_FIELD_CHARS))
            line = int(df.index[i]) + first_line if isinstance(df.index, pd.RangeIndex) \
                or np.issubdtype(df.index.dtype, np.integer) else None
            raise LimitError(f"column {quote(col)}: value {quote(df[col].iloc[i])} is over "
                             f"pakd's limit of {MAX_FIELD_CHARS:,} characters per value",
                             file=path, line=line,
                             fix="check the delimiter and quoting (an unclosed quote joins "
                                 "many lines into one value), or shorten the value")


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
