"""The run directory owns every path and the JSON of a run."""
import json

import numpy as np

from pakd.rundir import RunDir, write_json


def test_paths_and_finding_the_run_of_a_model(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.student("fisher_kd", 0.75).name == "fisher_kd_r75"
    assert rd.catalog_of(rd.best_student.with_suffix(".safetensors")).name == \
        "best_student_model.catalog.json"
    assert RunDir.of_model(rd.best_student) is None
    rd.split_csv.parent.mkdir(parents=True)
    rd.split_csv.write_text("user,item,rating,timestamp,part\n")
    assert RunDir.of_model(rd.best_student).root == rd.root
    assert RunDir.of_model(rd.student("scratch", 0.5)).root == rd.root


def test_write_json_takes_numpy_and_leaves_no_temp_files(tmp_path):
    p = write_json(tmp_path / "a" / "x.json", {"n": np.int64(3), "f": np.float32(0.5),
                                               "v": np.arange(3)})
    assert json.loads(p.read_text()) == {"n": 3, "f": 0.5, "v": [0, 1, 2]}
    assert not list((tmp_path / "a").glob(".*"))
