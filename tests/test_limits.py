"""The input limits (issue 34): bounded inflation, linear line scans, short quotes, and
input files named as what they are. Small versions of the bombs, measured in the test."""
import gzip
import os
import time
import tracemalloc
import zlib

import pytest

from pakd import limits
from pakd.errors import DataError, LimitError
from pakd.limits import gunzip, input_problem, longest_line, quote, read_input, short


def _bomb(inflated: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(b"user,item,rating\n" + b"1,2,3\n" * (inflated // 6)) + c.flush()


def test_gzip_bomb_stops_at_the_cap_without_holding_more(monkeypatch, tmp_path):
    """A 30 KB gzip of 30 MB (the 1 MB -> 1 GB case, a thousandth of it) with the floor at
    1 MB: refused having held about the cap (100 x 30 KB = 3 MB), not the 30 MB."""
    monkeypatch.setattr(limits, "INFLATE_FLOOR", 1 << 20)
    raw = _bomb(30 << 20)
    assert len(raw) < 60_000
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(LimitError, match="decompression bomb") as ei:
        gunzip(raw, tmp_path / "b.csv.gz")
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 << 20 and seconds < 1.0, (peak, seconds)
    assert "gunzip" in str(ei.value) and "b.csv.gz" in str(ei.value)


def test_gunzip_reads_what_gzip_writes(tmp_path):
    data = b"user,item,rating\n" + b"1,2,3\n" * 1000
    p = tmp_path / "r.csv.gz"
    assert gunzip(gzip.compress(data), p) == data
    assert gunzip(gzip.compress(data) + gzip.compress(data), p) == data + data   # members
    assert gunzip(gzip.compress(data) + b"\0\0\0", p) == data                   # padding
    for bad in (gzip.compress(data)[:-9], b"\x1f\x8b\x08\x00" + b"\xff" * 30, b"not gzip"):
        with pytest.raises(DataError, match="cannot decompress"):
            gunzip(bad, p)


def test_longest_line_in_linear_time():
    assert longest_line(b"ab\nabcd\nx") == (4, 2)
    assert longest_line(b"") == (0, 1) and longest_line(b"abc") == (3, 1)
    assert longest_line(b"a\n\nabc\n") == (3, 3)
    assert longest_line(b"x\n" * 10 + b"y" * 50, chunk=7) == (50, 11)    # across chunks
    big = b"1,2,3\n" * 2_000_000 + b"9" * 3000 + b"\n"
    t = time.perf_counter()
    assert longest_line(big) == (3000, 2_000_001)
    assert time.perf_counter() - t < 1.0


def test_quotes_are_short():
    assert quote("abc") == "'abc'" and short(7) == "7"
    q = quote("1" * 10_000_000)
    assert len(q) < 80 and "10,000,000 characters" in q
    assert len(short("x" * 1000)) < 80


def test_inputs_are_named_as_what_they_are(tmp_path):
    assert input_problem(tmp_path / "nope").problem == "file not found"
    assert "folder" in input_problem(tmp_path).problem
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert "symbolic link loop" in input_problem(loop).problem
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", dangling)
    assert "missing file" in input_problem(dangling).problem
    p = tmp_path / "f"
    p.write_bytes(b"12345")
    assert input_problem(p) is None and read_input(p, limit=5) == b"12345"
    with pytest.raises(LimitError, match="over pakd's limit"):
        read_input(p, limit=4)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_not_called_a_write_error(tmp_path):
    p = tmp_path / "secret.csv"
    p.write_text("user,item,rating\n1,2,3\n")
    p.chmod(0)
    try:
        problem = input_problem(p)
        assert "cannot read" in problem.problem and "write" not in problem.problem
    finally:
        p.chmod(0o600)
