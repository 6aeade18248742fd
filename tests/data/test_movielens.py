"""MovieLens releases parsed from tiny copies written in their exact official formats."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from fixtures_ml import (CSV_RATINGS, ML1M_RATINGS, ML10M_RATINGS, ML100K_RATINGS, tree_digest,
                         write_csv_release, write_ml1m, write_ml10m, write_ml100k)

from pakd.config import DataConfig
from pakd.data import load, load_movielens
from pakd.data.movielens import ML1M_AGES, _age_bucket


def _fields(info: dict) -> dict[str, dict]:
    return {f["name"]: f for f in info["fields"]}


# ----------------------------------------------------------------------------- ML-100K

def test_ml100k_counts_fields_and_side_tables(tmp_path):
    folder = write_ml100k(tmp_path)
    ds = load_movielens("ml-100k", data_dir=folder, download=False)
    info = ds.info()
    assert info["ratings"] == len(ML100K_RATINGS) == 7
    assert info["users"] == 4
    assert info["items"] == info["rated_items"] == 3       # no tags: rated items only
    assert info["catalogue_items"] == 5                     # every row of u.item
    assert info["rating_scale"] == [1.0, 5.0]
    assert info["rating_histogram"] == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 2}
    assert info["time_range"] == ["1997-09-22", "1998-04-08"]
    f = _fields(info)
    assert {"user_id", "item_id", "gender", "age", "occupation", "zip", "genres",
            "year"} <= set(f)
    assert f["genres"]["kind"] == "multi" and f["year"]["kind"] == "numeric"
    assert f["gender"]["side"] == "user" and f["genres"]["side"] == "item"
    json.dumps(info)  # what `pakd data info --json` prints

    r = ds.ratings
    assert list(r.columns) == ["user", "item", "rating", "timestamp"]
    assert r["user"].dtype == np.int64 and r["item"].dtype == np.int64
    assert r.iloc[0].tolist() == [1, 1, 5.0, 874965758]

    u = ds.users
    assert u.loc[1, "gender"] == "M" and u.loc[2, "gender"] == "F"
    # exact ages bucketed into ML-1M's groups: 24, 53, 17, 45
    assert u["age"].tolist() == ["18-24", "50-55", "under 18", "45-49"]
    assert u.loc[4, "occupation"] == "writer"
    assert u["zip"].tolist() == ["85", "94", "32", "T8"]   # default 2-character prefix

    it = ds.items
    assert it.loc[3, "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert it.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert it.loc[3, "genres"] == ["Drama", "War"]
    assert it.loc[5, "genres"] == []                       # the "unknown" flag is not a genre
    assert it.loc[1, "year"] == 1995
    assert it.loc[4, "year"] == 1997                       # from the release date, not the title
    assert np.isnan(it.loc[5, "year"])


def test_ml100k_zip_prefix_len(tmp_path):
    folder = write_ml100k(tmp_path)
    ds = load_movielens("ml-100k", data_dir=folder, download=False, zip_prefix_len=3)
    assert ds.users["zip"].tolist() == ["857", "940", "320", "T8H"]


def test_age_buckets_match_ml1m_groups():
    ages = pd.Series([1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73])
    assert _age_bucket(ages).tolist() == [
        "under 18", "under 18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44",
        "45-49", "45-49", "50-55", "50-55", "56+", "56+"]
    assert set(_age_bucket(ages)) == set(ML1M_AGES.values())


# ----------------------------------------------------------------------------- ML-1M

def test_ml1m_codes_and_unrated_movie(tmp_path):
    write_ml1m(tmp_path)
    ds = load_movielens("ml-1m", data_dir=tmp_path, download=False)  # parent of ml-1m/
    info = ds.info()
    assert info["ratings"] == len(ML1M_RATINGS) == 5
    assert info["users"] == 3
    # 3409 is in movies.dat but nobody rated it: not an item, but in the catalogue
    assert info["items"] == info["rated_items"] == 3
    assert info["catalogue_items"] == 4
    assert 3409 not in set(ds.ratings["item"])
    assert {"gender", "age", "occupation", "zip", "genres", "year"} <= set(_fields(info))

    u = ds.users
    assert u.loc[1].tolist() == ["F", "under 18", "K-12 student", "48"]
    assert u.loc[2].tolist() == ["M", "56+", "self-employed", "70"]
    assert u.loc[3].tolist() == ["M", "25-34", "scientist", "55"]
    it = ds.items
    assert it.loc[3409, "title"] == "Cité des enfants perdus, La (1995)"
    assert it.loc[661, "genres"] == ["Animation", "Children's", "Musical"]
    assert it.loc[1193, "year"] == 1975


def test_data_dir_may_be_the_folder_or_its_parent(tmp_path):
    folder = write_ml1m(tmp_path)
    a = load_movielens("ml-1m", data_dir=folder, download=False)
    b = load_movielens("ml-1m", data_dir=tmp_path, download=False)
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    assert a.source["folder"] == b.source["folder"] == str(folder)


# ----------------------------------------------------------------------------- ML-10M

def test_ml10m_half_stars_and_tags(tmp_path):
    write_ml10m(tmp_path)                              # folder name ml-10M100K
    ds = load_movielens("ml-10m", data_dir=tmp_path, download=False)
    info = ds.info()
    assert info["ratings"] == len(ML10M_RATINGS)
    assert sorted(ds.ratings["rating"].tolist()) == [0.5, 3.5, 4.5, 5.0]
    assert info["rating_scale"] == [0.5, 5.0]
    # 292 was tagged but never rated: GroupLens counts it; 316 neither
    assert info["rated_items"] == 2 and info["items"] == 3 and info["catalogue_items"] == 4
    assert "tags" in _fields(info) and "gender" not in _fields(info)
    assert ds.items.loc[292, "tags"] == ["virus"]      # case-folded, de-duplicated
    assert ds.items.loc[316, "tags"] == []
    assert ds.items.loc[185, "genres"] == ["Action", "Crime", "Thriller"]
    off = load_movielens("ml-10m", data_dir=tmp_path, download=False, tags_top_n=0)
    assert "tags" not in off.item_features and off.info()["items"] == 3


# ----------------------------------------------------------------------------- CSV releases

@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m", "ml-latest"])
def test_csv_releases(tmp_path, name):
    folder = write_csv_release(tmp_path, folder=name)
    ds = load_movielens(name, data_dir=folder, download=False)
    info = ds.info()
    assert info["ratings"] == len(CSV_RATINGS) and info["users"] == 3
    # rated {2, 29, 32} + tagged {50, 2, 29}; 60 is only in movies.csv
    assert info["rated_items"] == 3 and info["items"] == 4 and info["catalogue_items"] == 5
    assert ds.ratings.iloc[3].tolist() == [2, 32, 0.5, 974820900]
    it = ds.items
    assert it.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert it.loc[29, "year"] == 1995
    assert it.loc[60, "genres"] == []                 # "(no genres listed)"
    assert it.loc[2, "tags"] == ["robin williams"]
    assert it.loc[32, "tags"] == []


def test_gzipped_files_are_read(tmp_path):
    folder = write_csv_release(tmp_path, folder="ml-latest")
    for name in ("ratings.csv", "movies.csv"):
        p = folder / name
        (folder / (name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
    ds = load_movielens("ml-latest", data_dir=tmp_path, download=False)
    assert ds.info()["ratings"] == len(CSV_RATINGS)


def test_loading_never_modifies_the_release(tmp_path):
    for write in (write_ml100k, write_ml1m, write_ml10m, write_csv_release):
        write(tmp_path)
    before = tree_digest(tmp_path)
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-20m"):
        load_movielens(name, data_dir=tmp_path, download=False)
    assert tree_digest(tmp_path) == before


def test_load_with_data_config_and_filters(tmp_path):
    write_ml100k(tmp_path)
    ds = load(DataConfig(dataset="ml-100k", dir=str(tmp_path), download=False,
                         min_user_ratings=2), quiet=True)
    assert sorted(set(ds.ratings["user"])) == [1, 2, 3]  # user 4 has one rating
    assert any("dropped" in n for n in ds.info()["notes"])


# ----------------------------------------------------------------------------- embedded

def test_embedded_ml_latest_small():
    ds = load_movielens("ml-latest-small")
    info = ds.info()
    assert info["ratings"] == 100836
    assert info["users"] == 610
    assert info["items"] == 9742            # GroupLens: movies with a rating or a tag
    assert info["rated_items"] == 9724 and info["catalogue_items"] == 9742
    assert info["rating_scale"] == [0.5, 5.0]
    assert set(info["rating_histogram"]) == {f"{x / 2:g}" for x in range(1, 11)}
    assert info["time_range"] == ["1996-03-29", "2018-09-24"]
    assert [f["name"] for f in info["fields"]] == ["user_id", "item_id", "genres", "year", "tags"]
    assert not ds.ratings.duplicated(["user", "item"]).any()


# ------------------------------------------------------------ tags under a time-ordered split

def _timed_release(tmp_path):
    """8 users rate items 1-10 in item order (rating (u, i) at time 100 i + u), and tags
    before and after the train cuts: the global cut is 808 (80 ratings, the oldest 64
    train); user u's own cut under user_temporal is 100 * 8 + u."""
    d = tmp_path / "ml-latest"
    d.mkdir()
    rows = [(u, i, 1.0 + (u + i) % 5, 100 * i + u) for u in range(1, 9) for i in range(1, 11)]
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r:.1f},{t}\n" for u, i, r, t in rows))
    (d / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i},Film {i} (1990),Drama\n" for i in range(1, 11)))
    tags = [(1, 3, "early", 500),         # before every cut
            (2, 3, "late", 950),          # after every cut
            (99, 4, "stranger", 400),     # before the global cut, by a user with no rating
            (3, 6, "mid", 805),           # global cut 808: kept; user 3's cut 803: left out
            (5, 7, "own", 805)]           # user 5's cut 805: kept (at the cut counts)
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n" + "".join(
        f"{u},{i},{t},{s}\n" for u, i, t, s in tags))
    return load_movielens("ml-latest", data_dir=d, download=False)


def test_tags_for_a_time_cut_contain_no_later_tag(tmp_path):
    from pakd.data import encode, make_split
    from pakd.data.movielens import tags_as_of
    ds = _timed_release(tmp_path)
    assert ds.items.loc[3, "tags"] == ["early", "late"]        # the whole file, as loaded
    g = make_split(ds.ratings, method="temporal", seed=0)
    assert g.train_cut() == 808 and "latest train rating" in g.summary["event_rule"]
    it = tags_as_of(ds, g.train_cut()).items
    assert it.loc[3, "tags"] == ["early"] and it.loc[4, "tags"] == ["stranger"]
    assert it.loc[6, "tags"] == ["mid"] and it.loc[7, "tags"] == ["own"]
    u = make_split(ds.ratings, method="user_temporal", seed=0)
    assert u.train_cut()[3] == 803 and u.train_cut()[5] == 805
    it = tags_as_of(ds, u.train_cut()).items
    assert it.loc[3, "tags"] == ["early"] and it.loc[4, "tags"] == []
    assert it.loc[6, "tags"] == [] and it.loc[7, "tags"] == ["own"]
    assert ds.items.loc[3, "tags"] == ["early", "late"]        # the caller's copy unchanged

    def tag_vocab(split):                   # distinct tags the encoded field knows (+ padding)
        enc = encode(ds, split)
        return next(f for f in enc.schema.fields if f.name == "tags").vocab_size - 1
    assert tag_vocab(make_split(ds.ratings, method="user_ratio", seed=0)) == 5
    assert tag_vocab(g) == 4 and tag_vocab(u) == 2             # encode applies the cut
