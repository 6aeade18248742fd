"""The run directory owns every path and the JSON of a run."""
import json
import shutil
from pathlib import Path

import numpy as np

from pakd.rundir import RunDir, write_json


def test_paths_and_finding_the_run_of_a_model(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.student("fisher_kd", "0.75").name == "fisher_kd_r0_75"
    assert rd.student("fisher_kd", "3%").name == "fisher_kd_3pct"
    assert rd.student("fisher_kd", "48000").name == "fisher_kd_48000"
    assert rd.catalog_of(rd.best_student.with_suffix(".safetensors")).name == \
        "best_student_model.catalog.json"
    assert RunDir.of_model(rd.best_student) is None
    rd.split_csv.parent.mkdir(parents=True)
    rd.split_csv.write_text("user,item,rating,timestamp,part\n")
    assert RunDir.of_model(rd.best_student).root == rd.root
    assert RunDir.of_model(rd.student("scratch", "0.5")).root == rd.root


def test_write_json_takes_numpy_and_leaves_no_temp_files(tmp_path):
    p = write_json(tmp_path / "a" / "x.json", {"n": np.int64(3), "f": np.float32(0.5),
                                               "v": np.arange(3)})
    assert json.loads(p.read_text()) == {"n": 3, "f": 0.5, "v": [0, 1, 2]}
    assert not list((tmp_path / "a").glob(".*"))


# ----------------------------------------------------------------------------- guarded runs
# issue 15, item 3: a second command on a run in use, or one made with other data, split or
# seed, is refused with the difference named - and changes nothing in the run

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from pakd.cli import main  # noqa: E402
from pakd.errors import PakdError  # noqa: E402


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "pakd.log"}


@pytest.fixture(scope="module")
def _split_once(tmp_path_factory):
    run = tmp_path_factory.mktemp("split") / "run"
    assert main(["data", "split", "--run", str(run), "-q"]) == 0
    return run


@pytest.fixture
def split_run(_split_once, tmp_path):
    """A fresh copy of one split run: the split is made once per module, not per test."""
    return Path(shutil.copytree(_split_once, tmp_path / "run"))


@pytest.mark.parametrize("command,flags,named", [
    (["data", "split"], ["--seed", "1"], "seed: 0 -> 1"),
    (["data", "split"], ["--split-ratios", "0.7,0.15,0.15"], "split.ratios"),
    (["fisher"], ["--dataset", "other.csv"], "data.dataset: 'ml-latest-small' -> 'other.csv'"),
])
def test_a_command_that_disagrees_with_the_run_is_refused(split_run, capsys, command, flags,
                                                          named):
    before = _files(split_run)
    rc = main([*command, "--run", str(split_run), "-q", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and named in err and "--fresh" in err, err
    assert _files(split_run) == before            # run.yaml and the split untouched
    assert not (split_run / ".lock").exists()


def test_fresh_moves_the_old_run_aside(split_run, capsys):
    old_split = (split_run / "split.csv").read_bytes()
    assert main(["data", "split", "--run", str(split_run), "-q", "--seed", "1", "--fresh"]) == 0
    aside = list(split_run.parent.glob("run.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "split.csv").read_bytes() == old_split
    assert (split_run / "split.csv").read_bytes() != old_split
    assert "seed: 1" in (split_run / "run.yaml").read_text()


def test_a_run_in_use_is_refused_with_the_owner_pid(split_run, capsys):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket
        (split_run / ".lock").write_text(json.dumps({"pid": owner.pid,
                                                     "host": socket.gethostname(),
                                                     "since": 0}))
        before = _files(split_run)
        rc = main(["data", "split", "--run", str(split_run), "-q"])
        err = capsys.readouterr().err
        assert rc == 2 and f"in use by process {owner.pid}" in err
        assert _files(split_run) == before
    finally:
        owner.kill()
        owner.wait()
    # the owner is gone: its lock is stale and taken over, and released at the end
    assert main(["data", "split", "--run", str(split_run), "-q"]) == 0
    assert not (split_run / ".lock").exists()


def test_the_lock_is_exclusive_within_one_host(tmp_path):
    rd = RunDir(tmp_path / "run")
    lock = rd.lock().acquire()
    assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    other = rd.lock()
    other._stale = lambda owner: False         # as seen from another live process
    with pytest.raises(PakdError, match="in use by process"):
        other.acquire()
    lock.release()
    with rd.lock():
        assert (tmp_path / "run" / ".lock").exists()
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("flags", [["--weights", "0.5,0.5"], ["--weights=-1,1,1,1"],
                                   ["--tasks", "rating"], ["--rerank-n", "5,100000"]])
def test_a_refused_setting_leaves_run_yaml_alone(split_run, capsys, flags):
    """Issue 15: a wrong weight count or a negative weight stopped the command only after
    run.yaml had been rewritten with it."""
    before = _files(split_run)
    command = "train" if "--rerank-n" in flags else "ensemble"   # a check that needs the split
    assert main([command, "--run", str(split_run), "-q", *flags]) == 2
    err = capsys.readouterr().err
    assert any(w in err for w in ("weights", "--tasks", "catalogue")), err
    assert _files(split_run) == before
