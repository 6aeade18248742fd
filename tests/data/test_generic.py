"""Any ratings table: CSV, TSV, Parquet, column mapping, IDs, timestamps, feature tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pakd.config import DataConfig
from pakd.data import encode, load, load_table, make_split
from pakd.errors import DataError


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header(tmp_path):
    p = _write(tmp_path / "ratings.csv",
               "user,item,rating,timestamp\n1,10,4,1000\n1,11,2.5,1001\n2,10,5,1002\n")
    ds = load_table(p)
    r = ds.ratings
    assert r["user"].tolist() == [1, 1, 2] and r["user"].dtype == np.int64
    assert r["item"].tolist() == [10, 11, 10]
    assert r["rating"].tolist() == [4.0, 2.5, 5.0] and r["rating"].dtype == np.float32
    assert r["timestamp"].tolist() == [1000, 1001, 1002]
    assert ds.rating_scale == (2.5, 5.0)          # observed when not given
    assert ds.name == "ratings" and ds.source == {"ratings": str(p)}
    assert ds.info()["users"] == 2 and ds.info()["items"] == 2


def test_tsv_separator_from_extension_and_no_timestamp(tmp_path):
    p = _write(tmp_path / "r.tsv", "user\titem\trating\n1\t10\t3\n2\t10\t4\n2\t11\t1\n")
    ds = load_table(p, rating_scale=(1, 5))
    assert ds.ratings["rating"].tolist() == [3.0, 4.0, 1.0]
    assert (ds.ratings["timestamp"] == 0).all()   # optional timestamp missing
    assert ds.rating_scale == (1.0, 5.0)
    assert ds.info()["time_range"] is None


def test_explicit_separator(tmp_path):
    p = _write(tmp_path / "r.txt", "user;item;rating\n1;10;3\n")
    assert load_table(p, sep=";").ratings["item"].tolist() == [10]


def test_column_mapping_and_string_ids(tmp_path):
    p = _write(tmp_path / "log.csv",
               "when,uid,iid,score,extra\n"
               "1500000000,alice,m-1,4,x\n1500000001,bob,m-1,2,y\n1500000002, bob ,m-2,5,z\n")
    ds = load_table(p, columns={"user": "uid", "item": "iid", "rating": "score",
                                "timestamp": "when"})
    r = ds.ratings
    assert r["user"].tolist() == ["alice", "bob", "bob"]   # stripped strings
    assert r["item"].tolist() == ["m-1", "m-1", "m-2"]
    assert r["timestamp"].tolist() == [1500000000, 1500000001, 1500000002]
    assert ds.info()["users"] == 2
    sp = make_split(r, method="global_ratio", ratios=(1.0, 0.0, 0.0), seed=0)
    enc = encode(ds, sp)
    assert list(enc.user_ids) == ["alice", "bob"]


def test_iso_date_timestamps_are_unix_seconds(tmp_path):
    p = _write(tmp_path / "r.csv", "user,item,rating,timestamp\n"
               "1,1,4,2018-09-24\n1,2,3,2018-09-24T12:00:00Z\n2,1,5,2019-01-01 00:00:01\n")
    ds = load_table(p)
    assert ds.ratings["timestamp"].tolist() == [1537747200, 1537790400, 1546300801]
    assert ds.info()["time_range"] == ["2018-09-24", "2019-01-01"]


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"u": ["a", "b", "b"], "i": [7, 7, 8], "r": [1.0, 4.5, 3.0],
                       "t": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])})
    p = tmp_path / "ratings.parquet"
    df.to_parquet(p)
    ds = load_table(p, columns={"user": "u", "item": "i", "rating": "r", "timestamp": "t"},
                    rating_scale=(0.5, 5))
    r = ds.ratings
    assert r["user"].tolist() == ["a", "b", "b"]
    assert r["item"].tolist() == [7, 7, 8] and r["item"].dtype == np.int64
    assert r["rating"].tolist() == [1.0, 4.5, 3.0]
    assert r["timestamp"].tolist() == [1577836800, 1577923200, 1578009600]


def test_parquet_errors_name_the_row(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1],
                  "rating": [3.0, None, 2.0]}).iloc[1:].to_parquet(p)  # stored index 1, 2
    with pytest.raises(DataError, match=r"line 1: missing rating"):
        load_table(p)


def _feature_files(tmp_path):
    ratings = _write(tmp_path / "ratings.csv", "user,item,rating\n" + "".join(
        f"{u},{i},{1 + (u + i) % 5}\n" for u in (1, 2, 3) for i in range(100, 125) if (u + i) % 2))
    users = _write(tmp_path / "users.csv", "user,age,city\n1,30,paris\n2,41,oslo\n3,30,\n")
    items = _write(tmp_path / "items.csv", "movie,name,genres,year,studio\n" + "".join(
        f"{i},Film {i},{'Drama|War' if i % 2 else 'Comedy'},{1980 + i - 100},s{i % 3}\n"
        for i in range(100, 125)))
    return ratings, users, items


def test_feature_tables_with_inferred_kinds(tmp_path):
    ratings, users, items = _feature_files(tmp_path)
    ds = load_table(ratings, user_features=users, item_features=items, item_key="movie",
                    title_column="name")
    assert ds.user_features == {"age": "categorical", "city": "categorical"}
    # "|" -> multi; numeric with > 20 distinct values -> numeric; else categorical
    assert ds.item_features == {"genres": "multi", "year": "numeric", "studio": "categorical"}
    assert ds.users.loc[2, "city"] == "oslo"
    assert ds.users.loc[3, "city"] is None or pd.isna(ds.users.loc[3, "city"])
    assert ds.items.loc[101, "genres"] == ["Drama", "War"]
    assert ds.items.loc[100, "genres"] == ["Comedy"]
    assert ds.items.loc[124, "year"] == 2004
    assert ds.items.loc[100, "title"] == "Film 100"
    names = {f["name"]: f for f in ds.info()["fields"]}
    assert names["genres"]["cardinality"] == 3 and names["studio"]["cardinality"] == 3
    enc = encode(ds, make_split(ds.ratings, seed=0))
    assert {"age", "city", "genres", "year", "studio"} <= set(enc.tables)
    assert enc.titles[0] == "Film 100"


def test_feature_kinds_override_inference(tmp_path):
    ratings, users, items = _feature_files(tmp_path)
    ds = load_table(ratings, user_features=users, item_features=items, item_key="movie",
                    feature_kinds={"age": "numeric", "year": "categorical"})
    assert ds.user_features["age"] == "numeric"
    assert ds.users.loc[2, "age"] == 41
    assert ds.item_features["year"] == "categorical"
    assert ds.item_features["name"] == "categorical"   # no title_column: a plain field


def test_load_from_data_config(tmp_path):
    ratings, users, items = _feature_files(tmp_path)
    cfg = DataConfig(dataset=str(ratings), rating_min=1, rating_max=5,
                     user_features=str(users), item_features=str(items), item_key="movie",
                     feature_kinds={"studio": "multi"})
    ds = load(cfg, quiet=True)
    assert ds.rating_scale == (1.0, 5.0)
    assert ds.item_features["studio"] == "multi"
    assert ds.items.loc[100, "studio"] == ["s1"]

    tsv = _write(tmp_path / "r.tsv", "a\tb\tc\n1\t2\t3\n")
    ds = load(DataConfig(dataset=str(tsv), columns={"user": "a", "item": "b", "rating": "c"}))
    assert ds.ratings.iloc[0].tolist() == [1, 2, 3.0, 0]

    semi = _write(tmp_path / "r.txt", "user\titem\trating\n1\t2\t3\n")
    assert load(DataConfig(dataset=str(semi), sep="\\t")).n_ratings == 1  # as typed in a shell


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'ml-2m'") as e:
        load(DataConfig(dataset="ml-2m"))
    assert "Fix:" in str(e.value) and "ml-latest-small" in str(e.value)
