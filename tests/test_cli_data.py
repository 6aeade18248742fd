"""`pakd data ...` from the command line: JSON info, clear errors, reproducible splits."""
from __future__ import annotations

import json
import logging

import pytest
import yaml
from fixtures_ml import write_ml1m

from pakd.cli import main


@pytest.fixture(autouse=True)
def _restore_pakd_logger():
    """The CLI points the 'pakd' logger at the captured stderr and the run's log file;
    put it back so later tests do not write to closed streams."""
    log = logging.getLogger("pakd")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    for h in list(log.handlers):
        if h not in saved[0]:
            log.removeHandler(h)
            h.close()
    for h in saved[0]:
        if h not in log.handlers:
            log.addHandler(h)
    log.setLevel(saved[1])
    log.propagate = saved[2]


def test_data_info_json(capsys):
    assert main(["data", "info", "--dataset", "ml-latest-small", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    info = json.loads(out)
    assert (info["ratings"], info["users"], info["items"]) == (100836, 610, 9742)
    assert [f["name"] for f in info["fields"]] == ["user_id", "item_id", "genres", "year", "tags"]


def test_data_info_text_on_a_release_dir(tmp_path, capsys):
    write_ml1m(tmp_path)
    assert main(["data", "info", "--dataset", "ml-1m", "--data-dir", str(tmp_path),
                 "--download", "false", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ml-1m: 5 ratings, 3 users, 3 items (rated 3, catalogue 4)")
    assert "occupation" in out and "genres" in out


def test_data_info_missing_release_exits_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["data", "info", "--dataset", "ml-1m", "--data-dir", str(missing),
                 "--download", "false"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("pakd: error: ")
    assert str(missing) in err and "ratings.dat" in err and "Fix:" in err
    assert "Traceback" not in err


def test_data_info_not_cached_and_no_download(tmp_path, capsys):
    code = main(["data", "info", "--dataset", "ml-1m", "--cache-dir", str(tmp_path / "c"),
                 "--download", "false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "ml-1m is not in the cache" in err and "Traceback" not in err


def test_data_info_bad_ratings_file_exits_2(tmp_path, capsys):
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n1,2,3\n1,2,4\n")
    assert main(["data", "info", "--dataset", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}, line 3: user 1 rated item 2 more than once" in err
    assert main(["data", "info", "--dataset", str(p), "--duplicates", "mean", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rating_mean"] == 3.5


def test_data_split_is_byte_identical(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["data", "split", "--dataset", "ml-latest-small", "--seed", "3", "--quiet"]
    assert main(args + ["--out", str(a)]) == 0
    assert main(args + ["--out", str(b)]) == 0
    assert (a / "split.csv").read_bytes() == (b / "split.csv").read_bytes()
    for d in (a, b):
        assert (d / "run.yaml").is_file() and (d / "pakd.log").is_file()
        assert (d / "split.json").is_file()
    run = yaml.safe_load((a / "run.yaml").read_text())
    assert run["seed"] == 3 and run["data"]["dataset"] == "ml-latest-small"
    assert "split ml-latest-small" in (a / "pakd.log").read_text()
    header = (a / "split.csv").read_text().split("\n", 1)[0]
    assert header == "user,item,rating,timestamp,part"
    summary = json.loads((a / "split.json").read_text())
    assert sum(summary["rows"].values()) + sum(summary["cold_dropped"].values()) == 100836


def test_unknown_yaml_key_is_rejected(tmp_path, capsys):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("data:\n  datset: ml-1m\n")
    assert main(["data", "info", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "data.datset" in err and "did you mean data.dataset" in err
    assert "Traceback" not in err
    cfg.write_text("sed: 1\n")
    assert main(["data", "split", "--out", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    assert "'sed'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "split.csv").exists()


def test_time_split_of_a_file_without_timestamps_is_refused(tmp_path, capsys):
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,10,4\n1,11,3\n2,10,5\n2,11,2\n")
    before = f.read_bytes()
    rc = main(["data", "split", "--dataset", str(f), "--split", "user_temporal",
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and str(f) in err and "no timestamps" in err
    assert "--split user_ratio" in err and "timestamp=" in err
    assert f.read_bytes() == before and not (tmp_path / "run" / "split.csv").exists()
