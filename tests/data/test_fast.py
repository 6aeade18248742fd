"""The fast path for large rating files gives exactly what the careful path gives, and steps
aside (to the careful path and its line-exact errors) whenever it cannot vouch for a file."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from pakd.data import fast
from pakd.data.dataset import clean_ratings
from pakd.data.fast import typed_ratings
from pakd.data.generic import load_table
from pakd.data.io import read_table
from pakd.data.movielens import embedded_dir, load_movielens
from pakd.errors import DataError

pytest.importorskip("pyarrow")

COLS = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}


def _careful(path, **kw):
    raw = read_table(path, sep=",", quoted=True)
    raw = raw[list(COLS.values())]
    raw.columns = list(COLS)
    return clean_ratings(raw, file=path, first_line=2, **kw)


def test_fast_equals_careful_on_the_embedded_release():
    path = embedded_dir() / "ratings.csv.gz"
    typed = typed_ratings(path, columns=COLS)
    assert typed is not None and len(typed) == 100_836        # the fast path was taken
    a, sa = clean_ratings(typed, file=path, first_line=2, scale=(0.5, 5.0))
    b, sb = _careful(path, scale=(0.5, 5.0))
    pd.testing.assert_frame_equal(a, b)
    assert sa == sb and a["user"].dtype == np.int64 and a["rating"].dtype == np.float32


def test_movielens_loader_takes_the_fast_path(monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "typed_ratings",
                        lambda *a, **k: calls.append(1) or typed_ratings(*a, **k))
    ds = load_movielens("ml-latest-small")
    assert calls and len(ds.ratings) == 100_836


@pytest.mark.parametrize("text, why", [
    ("u,i,r,t\n1,10,4,1000\n007,11,3,1001\n", "leading zeros keep IDs as text"),
    ("u,i,r,t\nalice,10,4,1000\nbob,11,3,1001\n", "text IDs"),
    ("u,i,r,t\n1,10,4,2020-01-01\n2,11,3,1001\n", "a date timestamp"),
    ("u,i,r,t\n1,10,4,1000\n2,,3,1001\n", "an empty ID"),
    ("u,i,r,t\n1,10,four,1000\n2,11,3,1001\n", "a rating that is not a number"),
    ("u,i,r,t\n1,10,4,1000\n2,11,3,1001,9\n", "a row with an extra field"),
])
def test_fast_path_steps_aside(tmp_path, text, why):
    p = tmp_path / "r.csv"
    p.write_text(text)
    cols = {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}
    assert typed_ratings(p, columns=cols) is None, why


def test_errors_found_after_a_fast_read_keep_their_line(tmp_path):
    # parses cleanly as numbers, so the fast path reads it; the blank line shifts rows, and
    # the out-of-scale rating must still be reported on its true file line (5)
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n1,10,4\n\n2,10,3\n2,11,9\n")
    assert typed_ratings(p, columns={"user": "user", "item": "item", "rating": "rating"}) \
        is not None
    with pytest.raises(DataError, match=r"line 5: rating 9 is outside"):
        load_table(p, rating_scale=(1, 5))
    p.write_text("user,item,rating\n1,10,4\n\n2,10,3\n1,10,5\n")
    with pytest.raises(DataError, match=r"line 5: user 1 rated item 10 more than once "
                                        r"\(also on line 2\)"):
        load_table(p, rating_scale=(1, 5))


def test_gzip_parquet_and_missing_timestamp(tmp_path):
    rows = "user,item,rating\n1,10,4\n2,10,3.5\n2,11,1\n"
    gz = tmp_path / "r.csv.gz"
    gz.write_bytes(gzip.compress(rows.encode()))
    plain = tmp_path / "r.csv"
    plain.write_text(rows)
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2, 2], "item": [10, 10, 11], "rating": [4.0, 3.5, 1.0]}).to_parquet(pq)
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
    for p in (gz, plain, pq):
        assert typed_ratings(p, columns=cols, optional=("timestamp",)) is not None, p
        r = load_table(p, rating_scale=(0.5, 5)).ratings
        assert r["user"].tolist() == [1, 2, 2] and r["item"].tolist() == [10, 10, 11]
        assert r["rating"].tolist() == [4.0, 3.5, 1.0] and (r["timestamp"] == 0).all()
    # a timestamp column the user named explicitly must exist: the careful path says so
    with pytest.raises(DataError, match="timestamp column 'when' not found"):
        load_table(plain, columns={"timestamp": "when"})


def test_ml1m_dat_reads_fast_and_equals_careful(tmp_path):
    from fixtures_ml import write_ml1m
    folder = write_ml1m(tmp_path)
    dat = folder / "ratings.dat"
    names = ["user", "item", "rating", "timestamp"]
    typed = typed_ratings(dat, columns=dict(zip(names, names)), sep="::", names=names,
                          quoted=False)
    assert typed is not None
    raw = read_table(dat, sep="::", encoding="latin-1", names=names, min_columns=4)
    a, _ = clean_ratings(typed, file=dat, first_line=1, scale=(1, 5))
    b, _ = clean_ratings(raw, file=dat, first_line=1, scale=(1, 5))
    pd.testing.assert_frame_equal(a, b)
