"""How much pakd reads, inflates and parses before it refuses: every input limit, set once.

A file from a user may be built to exhaust the machine: a 1 KB YAML file whose aliases
expand to gigabytes, a 1 MB gzip that inflates to 1 GB, a 10 MB field that a date parser
digests in time quadratic in its length, a model config asking for a 10^9-wide layer. Each
reader checks the bound that applies before doing the work, and past it raises
`pakd.errors.LimitError` naming the file, the limit and the fix. The figures are far above
anything a real input needs (docs/hardening.md lists them with the reasons).

This module also opens input files (`read_input`), so that a missing file, a directory, a
symbolic-link loop and a file without read permission are each named as what they are.
"""
from __future__ import annotations

import errno
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError, LimitError

# settings files (YAML given with --config, a run's run.yaml): a real one is a few KB
MAX_SETTINGS_BYTES = 256 * 1024
MAX_NESTING = 32                      # YAML settings and JSON request bodies
# a model's JSON config (kind, architecture, schema) and a student's catalogue (IDs, titles)
MAX_MODEL_CONFIG_BYTES = 16 * 1024 * 1024
MAX_CATALOG_BYTES = 512 * 1024 * 1024
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024   # the JSON index at the head of a weights file
# delimited text: one line, one field, one timestamp (a date or Unix seconds is short)
MAX_LINE_BYTES = 1024 * 1024
MAX_FIELD_CHARS = 4096
MAX_TIMESTAMP_CHARS = 64
# decompression (gzip files, Parquet pages, zip members): what one compressed byte may
# become. Rating tables compress 3-10x; past INFLATE_FLOOR the output may be at most
# INFLATE_RATIO times the input, and never more than INFLATE_MAX.
INFLATE_FLOOR = 64 * 1024 * 1024
INFLATE_RATIO = 100
INFLATE_MAX = 8 * 1024 ** 3
MAX_EXTRACT_BYTES = 8 * 1024 ** 3     # a downloaded release, unzipped (ml-32m: ~1 GB)

QUOTE_CHARS = 40                      # the most of a value an error message repeats


def quote(value, n: int = QUOTE_CHARS) -> str:
    """``repr`` of a value for an error message: at most its first ``n`` characters, with
    its length when it is longer (a 10 MB field is never repeated whole). Other values are
    shown by their ``repr``, cut the same way."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"
    if len(value) <= n:
        return repr(value)
    return f"{value[:n]!r}... ({len(value):,} characters)"


def short(value, n: int = QUOTE_CHARS) -> str:
    """A value as it is when short (an ID: ``7``), else `quote` of it."""
    text = str(value)
    return text if len(text) <= n else quote(text, n)


def names_text(names, n: int = 12) -> str:
    """A list of column names for a message: each quoted short, at most ``n`` of them."""
    names = [str(x) for x in names]
    shown = ", ".join(quote(x, 24) for x in names[:n])
    return f"[{shown}{f', ... ({len(names)} in all)' if len(names) > n else ''}]"


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"  # pragma: no cover


def inflate_cap(compressed: int) -> int:
    """The most bytes ``compressed`` bytes may inflate to (see INFLATE_*)."""
    return int(min(INFLATE_MAX, max(INFLATE_FLOOR, INFLATE_RATIO * compressed)))


# ----------------------------------------------------------------------------- opening

def input_problem(path: Path, what: str = "file") -> DataError | None:
    """Why ``path`` cannot be read as a regular file (missing, a directory, a link loop,
    no permission), or None when it can."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return DataError(f"the {what} is a symbolic link loop (it points back at itself)",
                             file=path, fix="point pakd at the real file")
        if e.errno in (errno.EACCES, errno.EPERM):
            return DataError(f"cannot read the {what}: permission denied on its folder",
                             file=path, fix="give yourself read access (chmod) or copy the "
                             "file somewhere readable")
        if path.is_symlink():
            return DataError(f"the {what} is a symbolic link to a missing file", file=path,
                             fix="point pakd at the real file")
        return DataError(f"{what} not found", file=path, fix="check the path and the file name")
    import stat
    if stat.S_ISDIR(st.st_mode):
        return DataError(f"this is a folder, not a {what}", file=path,
                         fix="point pakd at the file inside it")
    if not stat.S_ISREG(st.st_mode):
        return DataError("this is not a regular file (a device, pipe or socket)", file=path,
                         fix=f"point pakd at a {what} on disk")
    if not os.access(path, os.R_OK):
        return DataError(f"cannot read the {what}: permission denied", file=path,
                         fix="give yourself read access (chmod u+r) or copy it somewhere "
                             "readable; pakd never writes to it")
    return None


def require_input(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a readable regular file, else the `DataError` saying why not."""
    path = Path(path)
    problem = input_problem(path, what)
    if problem is not None:
        raise problem
    return path


def read_input(path: str | Path, *, limit: int | None = None, what: str = "file",
               fix: str | None = None) -> bytes:
    """The bytes of a user's file, refused (`LimitError`) before reading when it is larger
    than ``limit``; opening errors are named as what they are (`input_problem`)."""
    path = require_input(path, what)
    size = path.stat().st_size
    if limit is not None and size > limit:
        raise LimitError(f"the {what} is {size_text(size)}, over pakd's limit of "
                         f"{size_text(limit)} for it", file=path,
                         fix=fix or f"a real {what} is far smaller: check that this is the "
                                    "right file")
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    except OSError as e:                 # raced with a change, or an I/O error
        raise DataError(f"cannot read the {what} ({e.strerror or e})", file=path,
                        fix="check the file and the disk") from None


# ----------------------------------------------------------------------------- inflating

def gunzip(raw: bytes, path: Path, *, cap: int | None = None) -> bytes:
    """Decompress gzip bytes (every member) without ever holding more than ``cap`` bytes
    of output (default `inflate_cap` of the input): a bomb stops at the cap with a
    `LimitError`; a damaged file is a `DataError`."""
    cap = inflate_cap(len(raw)) if cap is None else cap
    out = bytearray()
    data = memoryview(raw)
    fix_damaged = "download or gzip it again, or use the uncompressed file"
    if not len(data):
        return b""
    while len(data):
        d = zlib.decompressobj(wbits=31)            # 31: a gzip header and trailer
        try:
            while True:
                chunk = d.decompress(data, min(1 << 20, cap + 1 - len(out)))
                out += chunk
                if len(out) > cap:
                    raise LimitError(
                        f"the file inflates to more than {size_text(cap)} from "
                        f"{size_text(len(raw))}: refused as a possible decompression bomb "
                        f"(pakd's limit: {INFLATE_RATIO} times the compressed size, at least "
                        f"{size_text(INFLATE_FLOOR)}, at most {size_text(INFLATE_MAX)})",
                        file=path, fix="decompress it yourself (gunzip) if it is genuine, "
                        "and pass the plain file")
                data = d.unconsumed_tail
                if d.eof or not len(data) and not chunk:
                    break
        except zlib.error as e:
            raise DataError(f"cannot decompress the file ({e})", file=path,
                            fix=fix_damaged) from None
        if not d.eof:
            raise DataError("cannot decompress the file: it is cut short (no end of stream)", file=path,
                            fix=fix_damaged)
        data = memoryview(d.unused_data)
        while len(data) and data[0] == 0:      # padding after the last member
            data = data[1:]
    return bytes(out)


# ----------------------------------------------------------------------------- lines

def longest_line(raw: bytes, chunk: int = 1 << 26) -> tuple[int, int]:
    """(length in bytes, 1-based line number) of the longest line of ``raw``, in linear
    time and bounded extra memory (newlines found by numpy, a chunk at a time)."""
    best, best_line, start, line_no = 0, 1, 0, 1
    n = len(raw)
    for off in range(0, max(n, 1), chunk):
        a = np.frombuffer(raw, np.uint8, count=min(chunk, n - off), offset=off) if n else \
            np.zeros(0, np.uint8)
        nl = np.flatnonzero(a == 10) + off
        if len(nl):
            ends = nl
            starts = np.concatenate(([start], nl[:-1] + 1))
            lens = ends - starts
            k = int(np.argmax(lens))
            if lens[k] > best:
                best, best_line = int(lens[k]), line_no + k
            line_no += len(nl)
            start = int(nl[-1]) + 1
    if n - start > best:
        best, best_line = n - start, line_no
    return best, best_line


def check_lines(raw: bytes, path: Path) -> int:
    """The longest line's length in bytes; a `LimitError` past MAX_LINE_BYTES."""
    longest, line = longest_line(raw)
    if longest > MAX_LINE_BYTES:
        raise LimitError(f"line is {size_text(longest)} long, over pakd's limit of "
                         f"{size_text(MAX_LINE_BYTES)} per line", file=path, line=line,
                         fix="a rating table has short lines: check the delimiter and the "
                             "line endings, or split the long value")
    return longest
