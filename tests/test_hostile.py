"""Issue 34's hostile inputs, one regression test each, through the command line: every
one ends with exit 2 and pakd's own message naming the file, the value and the fix - no
traceback, no input file changed, no run folder left behind. Small versions of the bombs;
`benchmarks/hostile.py` runs the full-size ones with memory and time measured."""
import csv
import io
import json
import os
import time
import zlib

import pytest

from pakd import limits
from pakd.cli import main


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err


def unchanged(path):
    before = path.read_bytes()
    return lambda: path.read_bytes() == before


def test_yaml_alias_bomb_is_refused_at_the_first_alias(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{n}: &{n} [" + ",".join([f"*{m}"] * 9) + "]" for m, n in zip("abcdefgh", "bcdefghi")]
    p.write_text("\n".join(lines) + "\n")
    same = unchanged(p)
    t = time.perf_counter()
    rc, _, err = run(capsys, "config", "show", "--config", p)
    assert rc == 2 and time.perf_counter() - t < 2 and same()
    assert f"{p}, line 2: YAML aliases" in err and len(err) < 400      # was a 2 GiB message


def test_yaml_nesting_and_size_are_bounded(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    rc, _, err = run(capsys, "config", "show", "--config", deep)
    assert rc == 2 and "nested deeper than 32" in err
    big = tmp_path / "big.yaml"
    big.write_text("# x\n" * 100_000)
    rc, _, err = run(capsys, "config", "show", "--config", big)
    assert rc == 2 and "over pakd's limit of 256.0 KB" in err and "Fix:" in err


def test_gzip_bomb_is_a_named_error(tmp_path, capsys, monkeypatch):
    """1 MB -> 1 GB reached 9.9 GB before an error; small version: 20 KB -> 20 MB with the
    inflation floor at 1 MB."""
    monkeypatch.setattr(limits, "INFLATE_FLOOR", 1 << 20)
    p = tmp_path / "bomb.csv.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    p.write_bytes(c.compress(b"user,item,rating\n" + b"1,2,3\n" * 3_500_000) + c.flush())
    same = unchanged(p)
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and "decompression bomb" in err and "gunzip" in err and same()


@pytest.mark.parametrize("content,words", [
    (b"", "the file is empty (0 bytes"),                   # was "0 columns"
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40, "cannot decompress"),  # zlib.error
])
def test_empty_and_corrupt_gzip(tmp_path, capsys, content, words):
    p = tmp_path / "r.csv.gz"
    p.write_bytes(content)
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and words in err and str(p) in err and "Fix:" in err


def test_a_long_timestamp_field_is_refused_in_linear_time(tmp_path, capsys):
    """1 MB of digits took 37 s (dateutil turns a digit run into an integer in quadratic
    time) and the error repeated the whole field."""
    p = tmp_path / "ts.csv"
    p.write_text("user,item,rating,timestamp\n1,1,4,100\n2,2,3," + "1" * 1_000_000 + "\n")
    t = time.perf_counter()
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and time.perf_counter() - t < 3
    assert f"{p}, line 3:" in err and "1,000,000" in err and len(err) < 500


def test_a_timestamp_longer_than_any_date_is_refused(tmp_path, capsys):
    p = tmp_path / "ts.csv"
    p.write_text("user,item,rating,timestamp\n1,1,4,100\n2,2,3," + "7" * 3000 + "\n")
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and "longer than any date" in err and f"{p}, line 3" in err


def test_a_line_past_the_cap_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_LINE_BYTES", 64 * 1024)
    p = tmp_path / "long.csv"
    p.write_text("user,item,rating\n1,1,4\n2,2," + "3" * 100_000 + "\n")
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and f"{p}, line 3: line is 97.7 KB long" in err


def test_garbage_parquet_is_a_named_error(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    p.write_bytes(os.urandom(3000))
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and "cannot read Parquet" in err and "Fix:" in err


def test_parquet_that_decodes_to_far_more_than_its_size(tmp_path, capsys, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import numpy as np
    import pyarrow.parquet as pq
    monkeypatch.setattr(limits, "INFLATE_FLOOR", 1 << 20)
    n = 20_000
    title = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                           pa.array(["x" * 1000]))
    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"user": np.zeros(n, np.int64), "item": np.zeros(n, np.int64),
                             "rating": np.ones(n), "title": title}), p)
    assert p.stat().st_size < 100_000                  # 20 MB of titles once decoded
    rc, _, err = run(capsys, "data", "info", "--dataset", p)
    assert rc == 2 and "decodes to more than" in err


def test_a_folder_or_a_link_loop_is_not_called_missing(tmp_path, capsys):
    rc, _, err = run(capsys, "data", "info", "--dataset", tmp_path)
    assert rc == 2 and "this is a folder, not a file" in err
    loop = tmp_path / "loop.csv"
    os.symlink(loop, loop)
    rc, _, err = run(capsys, "data", "info", "--dataset", loop)
    assert rc == 2 and "symbolic link loop" in err


@pytest.mark.parametrize("seed", ["-1", str(2**70), str(2**32)])
def test_seeds_outside_numpys_range_stop_before_any_folder(tmp_path, capsys, seed):
    """--seed -1 and 2**70 were numpy/torch tracebacks that left a folder with pakd.log."""
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\n1,1,4\n1,2,3\n2,1,5\n")
    rc, _, err = run(capsys, "data", "split", "--run", tmp_path / "new", f"--seed={seed}",
                     "--dataset", data)
    assert rc == 2 and "--seed" in err and "4294967295" in err
    assert not (tmp_path / "new").exists()


def test_a_failed_split_leaves_no_half_made_run(tmp_path, capsys):
    bad = tmp_path / "r.csv"
    bad.write_text("user,item,rating\n1,1,4\n1,2,oops\n")
    same = unchanged(bad)
    rc, _, err = run(capsys, "data", "split", "--run", tmp_path / "new", "--dataset", bad)
    assert rc == 2 and "'oops' is not a number" in err and same()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["report", "ensemble", "fisher", "distill"])
def test_commands_that_read_a_run_never_create_one(tmp_path, capsys, command):
    """`report --run` on a missing folder silently created an empty run."""
    rc, _, err = run(capsys, command, "--run", tmp_path / "typo")
    assert rc == 2 and "does not exist" in err and "pakd run --out" in err
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, command, "--run", tmp_path / "empty")
    assert rc == 2 and "holds no run" in err and list((tmp_path / "empty").iterdir()) == []


def test_downloads_are_https_only_and_checked_against_pakds_table(tmp_path, capsys):
    rc, _, err = run(capsys, "data", "download", "ml-100k", "--base-url", "http://127.0.0.1:9",
                     "--cache-dir", tmp_path / "c")
    assert rc == 2 and "plain http" in err and "--allow-insecure" in err
    rc, _, err = run(capsys, "data", "download", "ml-latest", "--cache-dir", tmp_path / "c")
    assert rc == 2 and "no checksum of record" in err and "--allow-unverified" in err
    assert not (tmp_path / "c").exists()


@pytest.fixture
def student(tiny_enc, tmp_path):
    from model_zoo import randomised

    from pakd.models import save
    stem = tmp_path / "m"
    save(randomised("lightweight_model", tiny_enc).float(), stem)
    (tmp_path / "m.catalog.json").write_text(json.dumps(
        {"user_ids": [int(u) for u in tiny_enc.user_ids],
         "item_ids": [int(i) for i in tiny_enc.item_ids],
         "titles": [f"Film, \"{i}\"" for i in tiny_enc.item_ids]}))
    return stem


def test_recommend_k_past_the_catalogue_is_refused(student, capsys):
    rc, out, err = run(capsys, "recommend", "--model", student, "--user", "1", "-k", "1000000000")
    assert rc == 2 and out == "" and "-k 1000000000 is more than the 30 items" in err


def test_recommend_formats_for_scripts(student, capsys):
    rc, text, _ = run(capsys, "recommend", "--model", student, "--user", "1", "-k", "3")
    assert rc == 0 and text.startswith("top-3 for user 1")
    rc, out, _ = run(capsys, "recommend", "--model", student, "--user", "1", "-k", "3",
                     "--format", "json")
    body = json.loads(out)
    assert rc == 0 and body["user"] == 1 and [x["rank"] for x in body["items"]] == [1, 2, 3]
    assert [x["title"] for x in body["items"]] == [ln.split(". ", 1)[1].rsplit("  [", 1)[0]
                                                   for ln in text.splitlines()[1:]]
    rc, out, _ = run(capsys, "recommend", "--model", student, "--user", "1", "-k", "3",
                     "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [r["item"] for r in rows] == [str(x["item"]) for x in body["items"]]
    assert rows[0]["title"].startswith('Film, "')          # commas and quotes survive


def test_an_empty_model_config_is_a_named_error(student, capsys):
    student.with_suffix(".json").write_text("")
    rc, _, err = run(capsys, "recommend", "--model", student, "--user", "1")
    assert rc == 2 and f"{student}.json is empty" in err
