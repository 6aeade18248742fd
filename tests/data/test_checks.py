"""Bad input stops with a DataError naming the file, the line and the fix - and the input
files are never modified."""
from __future__ import annotations

import re

import pytest
from fixtures_ml import md5, tree_digest, write_ml1m, write_ml100k

from pakd.config import DataConfig
from pakd.data import load, load_movielens, load_table
from pakd.errors import DataError


def expect(fn, file, line: int | None, *fragments: str) -> DataError:
    """Run ``fn``; it must raise a DataError about ``file`` (and ``line``) with a fix."""
    with pytest.raises(DataError) as ei:
        fn()
    msg = str(ei.value)
    assert msg.startswith(str(file)), msg
    if line is None:
        assert not re.search(r", line \d+:", msg), msg
    else:
        assert f"{file}, line {line}:" in msg, msg
        assert ei.value.line == line
    assert "\nFix: " in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return ei.value


def csv(tmp_path, text: str, name: str = "ratings.csv", encoding: str = "utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


# ----------------------------------------------------------------------------- files

def test_missing_file(tmp_path):
    expect(lambda: load_table(tmp_path / "nope.csv"), tmp_path / "nope.csv", None,
           "file not found")
    expect(lambda: load(DataConfig(dataset=str(tmp_path / "nope.csv"))), tmp_path / "nope.csv",
           None, "file not found")


def test_missing_release_files_say_what_goes_where(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "users.dat").unlink()
    e = expect(lambda: load_movielens("ml-1m", data_dir=folder, download=False), folder, None,
               "missing: users.dat", "ml-1m.zip")
    assert f"place ratings.dat, users.dat, movies.dat from ml-1m.zip in {folder}" in str(e)


def test_feature_file_missing(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n")
    expect(lambda: load_table(p, item_features=tmp_path / "items.csv"), tmp_path / "items.csv",
           None, "file not found")


# ----------------------------------------------------------------------------- delimiter / encoding

def test_tab_file_read_with_comma_suggests_tab(tmp_path):
    p = csv(tmp_path, "user\titem\trating\n1\t2\t3\n")
    e = expect(lambda: load_table(p), p, 1, "delimiter ','")
    assert "--sep '\\t'" in str(e) and "tab" in str(e)


def test_semicolon_file_suggests_semicolon(tmp_path):
    p = csv(tmp_path, "user;item;rating\n1;2;3\n", name="r.tsv")
    expect(lambda: load_table(p), p, 1, "--sep ';'")


def test_movielens_file_with_the_wrong_delimiter(tmp_path):
    folder = write_ml100k(tmp_path, **{"u.data": b"1,1,5,874965758\n1,2,3,876893171\n"})
    expect(lambda: load_movielens("ml-100k", data_dir=folder, download=False),
           folder / "u.data", 1, "tab", "','")


def test_latin1_bytes_read_as_utf8(tmp_path):
    p = csv(tmp_path, "user,item,rating\nu1,Heat,3\nu2,Amélie,4\nu3,Brazil,5\n",
            encoding="latin-1")
    expect(lambda: load_table(p), p, 3, "0xe9", "not valid utf-8", "--encoding latin-1")
    ok = load_table(p, encoding="latin-1")
    assert ok.ratings["item"].tolist() == ["Heat", "Amélie", "Brazil"]


def test_latin1_feature_file(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n")
    items = csv(tmp_path, "item,studio\n1,A\n2,Pathé\n", name="items.csv", encoding="latin-1")
    expect(lambda: load_table(p, item_features=items), items, 3, "--encoding latin-1")


# ----------------------------------------------------------------------------- ratings

@pytest.mark.parametrize("value,problem", [
    ("abc", "rating 'abc' is not a number"),
    ("", "missing rating"),
    ("NaN", "rating 'NaN' is not a number"),
    ("inf", "rating 'inf' is not a number"),
])
def test_bad_rating_values(tmp_path, value, problem):
    p = csv(tmp_path, f"user,item,rating\n1,2,3\n1,3,4\n2,2,{value}\n2,3,1\n")
    expect(lambda: load_table(p), p, 4, problem)


def test_out_of_range_rating_movielens(tmp_path):
    data = b"1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t7\t888550871\n"
    folder = write_ml100k(tmp_path, **{"u.data": data})
    expect(lambda: load_movielens("ml-100k", data_dir=folder, download=False),
           folder / "u.data", 3, "rating 7 is outside the rating scale [1, 5]")


def test_out_of_range_rating_ml10m(tmp_path):
    from fixtures_ml import write_ml10m
    folder = write_ml10m(tmp_path)
    (folder / "ratings.dat").write_bytes(b"1::122::5::838985046\n1::185::0::838983525\n")
    expect(lambda: load_movielens("ml-10m", data_dir=folder, download=False),
           folder / "ratings.dat", 2, "rating 0 is outside the rating scale [0.5, 5]")


def test_out_of_range_rating_generic(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n1,3,10\n2,2,0\n")
    expect(lambda: load_table(p, rating_scale=(1, 10)), p, 4,
           "rating 0 is outside the rating scale [1, 10]", "--rating-min")
    expect(lambda: load(DataConfig(dataset=str(p), rating_min=1, rating_max=5)), p, 3,
           "rating 10 is outside the rating scale [1, 5]")
    assert load(DataConfig(dataset=str(p), rating_min=0, rating_max=10)).n_ratings == 3


def test_empty_ids(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n ,3,4\n")
    expect(lambda: load_table(p), p, 3, "empty user ID")


def test_bad_timestamp(tmp_path):
    p = csv(tmp_path, "user,item,rating,timestamp\n1,2,3,2018-01-01\n1,3,4,yesterday\n")
    expect(lambda: load_table(p), p, 3, "'yesterday'", "ISO date")


# ----------------------------------------------------------------------------- duplicates

DUP = "user,item,rating,timestamp\n1,2,3,100\n1,3,4,50\n1,2,5,10\n1,2,1,200\n2,2,2,7\n"


def test_duplicates_error_names_both_lines(tmp_path):
    p = csv(tmp_path, DUP)
    expect(lambda: load_table(p), p, 4, "user 1 rated item 2 more than once",
           "also on line 2", "--duplicates first|last|mean")


def test_duplicates_error_in_a_release(tmp_path):
    folder = write_ml1m(tmp_path, **{"ratings.dat": b"1::1193::5::978300760\n"
                                                    b"2::661::3::978302109\n"
                                                    b"1::1193::4::978300999\n"})
    expect(lambda: load_movielens("ml-1m", data_dir=folder, download=False),
           folder / "ratings.dat", 3, "also on line 1")
    ds = load_movielens("ml-1m", data_dir=folder, download=False, duplicates="last")
    assert ds.ratings.query("user == 1")["rating"].tolist() == [4.0]


@pytest.mark.parametrize("policy,rating,ts", [
    ("first", 5.0, 10),    # earliest by time (line 4), not earliest in the file
    ("last", 1.0, 200),    # latest by time
    ("mean", 3.0, 200),    # (3 + 5 + 1) / 3, latest timestamp
])
def test_duplicate_policies(tmp_path, policy, rating, ts):
    p = csv(tmp_path, DUP)
    r = load_table(p, duplicates=policy).ratings
    assert len(r) == 3
    kept = r[(r["user"] == 1) & (r["item"] == 2)]
    assert kept["rating"].tolist() == [rating] and kept["timestamp"].tolist() == [ts]
    # rows that were not repeated are untouched
    rest = r[~((r["user"] == 1) & (r["item"] == 2))]
    assert rest[["rating", "timestamp"]].values.tolist() == [[4, 50], [2, 7]]


def test_duplicate_policies_without_timestamps_use_file_order(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n1,2,5\n1,2,4\n")
    assert load_table(p, duplicates="first").ratings["rating"].tolist() == [3.0]
    assert load_table(p, duplicates="last").ratings["rating"].tolist() == [4.0]
    assert load_table(p, duplicates="mean").ratings["rating"].tolist() == [4.0]
    via_cfg = load(DataConfig(dataset=str(p), duplicates="last"))
    assert via_cfg.ratings["rating"].tolist() == [4.0]


# ----------------------------------------------------------------------------- row shape

def test_row_with_too_many_fields(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n1,3,4\n1,4,5,6\n")
    expect(lambda: load_table(p), p, 4, "row has 4 fields where the file has 3")


def test_first_data_row_with_too_many_fields(tmp_path):
    # pandas would silently turn the extra leading field into an index and shift every column
    p = csv(tmp_path, "user,item,rating\n1,2,3,9\n1,3,4\n")
    expect(lambda: load_table(p), p, 2, "row has 4 fields where the file has 3")
    p = csv(tmp_path, "user,item,rating\n9,1,2,3\n9,1,3,4\n", name="all.csv")
    expect(lambda: load_table(p), p, 2, "row has 4 fields where the file has 3")


def test_first_row_with_too_many_fields_in_a_headerless_release(tmp_path):
    folder = write_ml100k(tmp_path, **{"u.data": b"1\t1\t5\t874965758\t9\n1\t2\t3\t876893171\n"})
    expect(lambda: load_movielens("ml-100k", data_dir=folder, download=False),
           folder / "u.data", 1, "row has 5 fields where the file has 4")
    folder = write_ml1m(tmp_path / "b", **{"movies.dat": b"1::A (1990)::Drama::x\n"})
    expect(lambda: load_movielens("ml-1m", data_dir=folder, download=False),
           folder / "movies.dat", 1, "row has 4 fields where the file has 3")


def test_later_row_with_too_many_fields_in_a_release(tmp_path):
    folder = write_ml1m(tmp_path, **{"ratings.dat": b"1::1193::5::978300760\n"
                                                    b"1::661::3::978302109::7\n"})
    expect(lambda: load_movielens("ml-1m", data_dir=folder, download=False),
           folder / "ratings.dat", 2, "row has 5 fields where the file has 4")


def test_line_numbers_count_blank_lines(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n\n\n1,3,x\n")
    expect(lambda: load_table(p), p, 5, "rating 'x'")
    p = csv(tmp_path, "user,item,rating\n1,2,3\n\n1,2,4\n", name="d.csv")
    expect(lambda: load_table(p), p, 4, "also on line 2")
    folder = write_ml100k(tmp_path, **{"u.data": b"1\t1\t5\t874965758\r\n\r\n"
                                                 b"1\t2\t9\t876893171\r\n"})
    expect(lambda: load_movielens("ml-100k", data_dir=folder, download=False),
           folder / "u.data", 3, "rating 9")
    folder = write_ml1m(tmp_path / "b", **{"movies.dat": b"661::A (1990)::Drama\n\nx::B::Drama\n"})
    expect(lambda: load_movielens("ml-1m", data_dir=folder, download=False),
           folder / "movies.dat", 3, "item 'x' is not an integer ID")


def test_trailing_blank_lines_are_fine(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n1,3,4\n\n\n")
    assert load_table(p).n_ratings == 2


def test_empty_file(tmp_path):
    p = csv(tmp_path, "user,item,rating\n")
    expect(lambda: load_table(p), p, None, "no data rows")


# ----------------------------------------------------------------------------- columns / filters

def test_missing_mapped_column(tmp_path):
    p = csv(tmp_path, "userId,movieId,rating\n1,2,3\n")
    expect(lambda: load_table(p, columns={"user": "userId", "item": "itemId"}), p, 1,
           "column(s) itemId not found", "'movieId'", "--columns")
    expect(lambda: load_table(p, columns={"user": "userId", "item": "movieId",
                                          "timestamp": "ts"}), p, 1,
           "timestamp column 'ts' not found")
    other = csv(tmp_path, "uid,mid,rating\n1,2,3\n", name="other.csv")
    expect(lambda: load(DataConfig(dataset=str(other))), other, 1,
           "column(s) user, item not found")


def test_movielens_own_header_needs_no_columns(tmp_path):
    """Issue 34: userId,movieId,rating,timestamp (MovieLens' ratings.csv) is recognised
    without --columns; a file that also has plain user/item columns keeps the plain ones."""
    p = csv(tmp_path, "userId,movieId,rating,timestamp\n1,2,3,100\n1,3,4,200\n2,2,5,300\n")
    ds = load(DataConfig(dataset=str(p)))
    assert ds.ratings[["user", "item"]].values.tolist() == [[1, 2], [1, 3], [2, 2]]
    assert ds.ratings["timestamp"].tolist() == [100, 200, 300]
    both = csv(tmp_path, "user,item,userId,movieId,rating\n7,8,1,2,3\n", name="both.csv")
    assert load_table(both).ratings[["user", "item"]].values.tolist() == [[7, 8]]


def test_csv_release_with_a_wrong_header(tmp_path):
    from fixtures_ml import write_csv_release
    folder = write_csv_release(tmp_path)
    (folder / "ratings.csv").write_text("user,item,rating,timestamp\n1,2,3,4\n")
    expect(lambda: load_movielens("ml-20m", data_dir=folder, download=False),
           folder / "ratings.csv", 1, "missing column(s)", "userId,movieId,rating,timestamp")


def test_feature_table_problems(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n")
    items = csv(tmp_path, "item,g\n2,a\n3,b\n2,c\n", name="items.csv")
    expect(lambda: load_table(p, item_features=items), items, 4, "ID 2 appears twice")
    items = csv(tmp_path, "item,g\n2,a\nthree,b\n", name="items2.csv")
    expect(lambda: load_table(p, item_features=items), items, 3, "'three' is not written as an integer")
    items = csv(tmp_path, "id,g\n2,a\n", name="items3.csv")
    expect(lambda: load_table(p, item_features=items), items, 1, "key column 'item' not found",
           "--item-key")


# ----------------------------------------------------------------------------- messy files

RATINGS = "user,item,rating,timestamp\n1,10,4.0,964982703\n1,11,3.0,964982703\n2,10,5.0,964982703\n"


@pytest.mark.parametrize("variant", ["bom", "crlf", "quoted", "spaces", "blank_tail",
                                     "quoted_tsv"])
def test_legitimate_spreadsheet_quirks_load(tmp_path, variant):
    """Issue 15: what spreadsheets write is accepted and reads as the plain file does."""
    text, name, raw = RATINGS, "r.csv", None
    if variant == "bom":
        raw = b"\xef\xbb\xbf" + text.encode()
    elif variant == "crlf":
        raw = text.replace("\n", "\r\n").encode()
    elif variant == "quoted":
        text = "\n".join(",".join(f'"{v}"' for v in ln.split(",")) for ln in text.splitlines())
    elif variant == "spaces":
        text = "\n".join(" , ".join(f" {v} " for v in ln.split(",")) for ln in text.splitlines())
    elif variant == "blank_tail":
        text = text + "\n\n  \n"
    elif variant == "quoted_tsv":
        text = "\n".join("\t".join(f'"{v}"' for v in ln.split(",")) for ln in text.splitlines())
        name = "r.tsv"
    p = tmp_path / name
    p.write_bytes(raw if raw is not None else text.encode())
    got = load_table(p).ratings
    want = load_table(csv(tmp_path, RATINGS, name="plain.csv")).ratings
    assert got.to_dict("list") == want.to_dict("list")


def test_ids_are_never_folded_or_wrapped(tmp_path):
    """Issue 15: "007" and "7", "1.0" and "1", "1e3" and "1000" are different IDs; 23-digit
    IDs keep their text (they wrapped to -2**63 and collided)."""
    p = csv(tmp_path, "user,item,rating\n007,1.0,4\n7,1,3\n12345678901234567890123,1e3,2\n"
                      "12345678901234567890124,1000,1\n")
    r = load_table(p).ratings
    assert list(r["user"]) == ["007", "7", "12345678901234567890123", "12345678901234567890124"]
    assert list(r["item"]) == ["1.0", "1", "1e3", "1000"]
    plain = load_table(csv(tmp_path, "user,item,rating\n1,-2,3\n0,5,4\n", name="p.csv")).ratings
    assert plain["user"].dtype == "int64" and list(plain["item"]) == [-2, 5]


def test_string_ids_survive_the_split_file(tmp_path):
    from pakd.data import make_split, read_split
    p = csv(tmp_path, "user,item,rating\n" + "".join(
        f"{u},{i},{(a + b) % 5 + 1}\n" for a, u in enumerate(("007", "7", "NA"))
        for b, i in enumerate(("01", "1", "x"))))
    ds = load_table(p)
    run = tmp_path / "run"
    run.mkdir()
    make_split(ds.ratings, method="global_ratio", ratios=(0.6, 0.2, 0.2), seed=0).write(run)
    back = read_split(run).frame
    assert sorted(set(back["user"])) <= ["007", "7", "NA"] and "007" in set(back["user"])
    assert set(back["item"]) <= {"01", "1", "x"} and back["item"].map(type).eq(str).all()


def test_row_with_a_missing_field_is_named(tmp_path):
    """Issue 15: it was reported as line 2's timestamp being 'neither Unix seconds nor a date'."""
    p = csv(tmp_path, "user,item,rating,timestamp\n1,10,4.0,964982703\n1,11,3.0\n")
    expect(lambda: load_table(p), p, 3, "row has 3 field(s) where the file has 4")
    p = csv(tmp_path, "user,item,rating,timestamp\n1,10,4.0,964982703\n1,11,3.0,\n", name="e.csv")
    expect(lambda: load_table(p), p, 3, "missing timestamp")
    p = csv(tmp_path, "user,item,rating,timestamp\n1,10,4.0,964982703\n1,11,3.0,2018-09-24\n",
            name="mixed.csv")
    assert list(load_table(p).ratings["timestamp"]) == [964982703, 1537747200]
    # found by fuzzing: a 23-digit timestamp overflowed int64 without a word
    p = csv(tmp_path, "user,item,rating,timestamp\n1,10,4.0,12345678901234567890123\n",
            name="huge.csv")
    expect(lambda: load_table(p), p, 2, "out of range")
    p = csv(tmp_path, "user,item,rating\n1,10,3.4028235677973366e+38\n", name="big.csv")
    expect(lambda: load_table(p), p, 2, "too large to be a rating")


@pytest.mark.parametrize("body,line,fragment", [
    ("1,10,4\n1,11,3\n2,10,50\n2,11,1\n", 4, "rating 50 lies far outside"),
    ("1,10,4\n1,11,3\n2,10,-1\n2,11,1\n", 4, "rating -1 is negative"),
    ("".join(f"{u},{i},{(u * i) % 10 / 2 + 0.5}\n" for u in range(1, 9) for i in range(1, 9))
     + "9,1,50\n", 66, "rating 50 lies far outside"),
])
def test_out_of_range_ratings_stop_unless_the_scale_is_given(tmp_path, body, line, fragment):
    """Issue 15: -1 or 50 silently stretched the inferred scale."""
    p = csv(tmp_path, "user,item,rating\n" + body)
    expect(lambda: load_table(p), p, line, fragment, "--rating-min/--rating-max")
    ds = load_table(p, rating_scale=(-1.0, 50.0))
    assert ds.rating_scale == (-1.0, 50.0)


def test_wide_encodings_are_named(tmp_path):
    p = csv(tmp_path, RATINGS, encoding="utf-16")
    expect(lambda: load_table(p), p, 1, "UTF-16", "--encoding utf-16")
    assert load_table(p, encoding="utf-16").ratings.shape[0] == 3
    expect(lambda: load_table(p, encoding="klingon"), p, None, "unknown text encoding")


def test_nothing_left_after_filtering(tmp_path):
    p = csv(tmp_path, "user,item,rating\n1,2,3\n2,2,4\n3,4,5\n")
    expect(lambda: load(DataConfig(dataset=str(p), min_user_ratings=2)), p, None,
           "no ratings are left", "--min-user-ratings")
    folder = write_ml100k(tmp_path)
    expect(lambda: load(DataConfig(dataset="ml-100k", dir=str(folder), min_user_ratings=50)),
           folder, None, "no ratings are left")


# ----------------------------------------------------------------------------- files unchanged

def test_inputs_are_byte_for_byte_unchanged(tmp_path):
    good = csv(tmp_path, DUP)
    bad = csv(tmp_path, "user,item,rating\n1,2,3\n1,3,x\n", name="bad.csv")
    latin = csv(tmp_path, "user,item,rating\n1,Amélie,3\n", name="latin.csv", encoding="latin-1")
    items = csv(tmp_path, "item,g\n2,a|b\n3,c\n", name="items.csv")
    folder = write_ml100k(tmp_path / "ml")
    before = tree_digest(tmp_path)
    assert before[str(good.relative_to(tmp_path))] == md5(DUP.encode())
    with pytest.raises(DataError):
        load_table(good)                                    # duplicates
    with pytest.raises(DataError):
        load_table(bad)
    with pytest.raises(DataError):
        load_table(latin)
    with pytest.raises(DataError):
        load(DataConfig(dataset="ml-100k", dir=str(folder), min_user_ratings=50))
    load_table(good, duplicates="mean", item_features=items)
    load_table(latin, encoding="latin-1")
    load_movielens("ml-100k", data_dir=folder, download=False)
    assert tree_digest(tmp_path) == before


def test_corrupt_gzip(tmp_path):
    import gzip
    p = tmp_path / "ratings.csv.gz"
    p.write_bytes(gzip.compress(b"user,item,rating\n1,2,3\n")[:-8])   # truncated
    expect(lambda: load_table(p), p, None, "cannot decompress")
    p.write_bytes(b"user,item,rating\n1,2,3\n")                        # not gzip at all
    expect(lambda: load_table(p), p, None, "cannot decompress")
    p.write_bytes(gzip.compress(b"user,item,rating\n1,2,3\n"))
    assert load_table(p).n_ratings == 1


@pytest.mark.parametrize("setting", [{"sep": ";"}, {"encoding": "latin-1"},
                                     {"columns": {"user": "u"}}, {"rating_min": 1.0}])
def test_generic_only_settings_are_refused_for_a_release(setting):
    """Issue 15: --sep was silently ignored for a MovieLens release."""
    flag = "--" + next(iter(setting)).replace("_", "-")
    with pytest.raises(DataError, match=f"{flag} only applies to a ratings file") as ei:
        load(DataConfig(**setting))
    assert f"drop {flag}" in str(ei.value)


def test_dates_outside_the_nanosecond_range_become_seconds(tmp_path):
    """Found by the fuzz benchmark: a date in year 1 overflowed pandas' nanoseconds
    (OutOfBoundsDatetime, a traceback); seconds hold any date."""
    p = csv(tmp_path, "user,item,rating,timestamp\n1,1,4,0001-01-01\n1,2,3,9999-12-31\n"
                      "2,1,5,2018-09-24\n")
    ts = load_table(p).ratings["timestamp"].tolist()
    assert ts == [-62135596800, 253402214400, 1537747200]
