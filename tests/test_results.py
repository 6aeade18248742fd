"""Typed results: one versioned schema for every result file, written and read by one pair."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from pakd.errors import PakdError
from pakd.results import (READS, SCHEMA_VERSION, FisherAnalysis, FisherExperiment,
                          PakdExperiment, RunTimings, TeachersReport, load_result,
                          write_result)

KEPT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SEED0 = KEPT / "2026-11-26_issue13_seeds" / "seed-0"          # written before schema_version
OLD = {TeachersReport: SEED0 / "teachers.json", PakdExperiment: SEED0 / "pakd_experiment.json",
       FisherAnalysis: SEED0 / "ensemble_fisher_analysis.json", RunTimings: SEED0 / "timings.json",
       FisherExperiment: KEPT / "2026-11-26_issue10_group_floor_seed0"
       / "movielens_fisher_experiment.json"}


def _same(a, b) -> bool:
    """Equal JSON values, NaN equal to NaN (metrics may be NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _row(method="fisher_kd", budget="3%", params=1200) -> dict:
    return {"method": method, "model": "tower", "budget": budget, "target_params": params,
            "pruning_ratio": 0.25, "rmse": 0.93, "mae": 0.74, "auc": 0.71, "logloss": 0.6,
            "recall@10": 0.05, "ndcg@10": 0.041, "ndcg@10_rel4": float("nan"),
            "valid": {"rmse": 0.95, "ndcg@10": 0.04}, "params": np.int64(params),
            "train_seconds": 1.5, "best_epoch": 2, "best_epochs": [2], "epochs_run": 3,
            "arch": {"kind": "tower", "dims": [8, 4]}, "file": "/r/models/students/x",
            "reference": None, "speedup_throughput": 12.5}


def _tiny() -> dict:
    """One small instance of every kind, as its writer builds it."""
    metrics = {"rmse": 0.9, "mae": 0.7, "auc": 0.7, "logloss": 0.6, "recall@10": 0.1,
               "ndcg@10": 0.05, "ci95": {"rmse": [0.88, 0.92]}}
    member = {**metrics, "params": 100, "train_seconds": 2.0, "epochs_run": 3,
              "best_epoch": 1, "epoch_seconds": [0.5, 0.5, 0.5], "arch": {"kind": "svd"}}
    ens = {**metrics, "params": 300, "weights": {"svd": 0.5, "ease": 0.5},
           "tasks": {"svd": "balance", "ease": "ranking"}, "rating_mix": {"svd": 1.0}}
    teacher = {"method": "teacher", "model": "ensemble", "budget": None, "params": 300,
               "rmse": 0.9, "ndcg@10": 0.05, "valid": {"rmse": 0.91, "ndcg@10": 0.05}}
    timing = {"svd": {"fisher_seconds": 0.3, "examples": 500, "analysis_seconds": 0.1}}
    return {
        TeachersReport: TeachersReport(
            dataset="tiny", split={"rows": {"train": 10}}, threads=1,
            members={"svd": member, "ease": {**member, "best_epoch": None}}, ensemble=ens,
            baselines={"mostpop": {"params": 0, "ndcg@10": 0.02, "rmse": None}},
            rerank={"retrieval": "ease", "by_n": {}}),
        PakdExperiment: PakdExperiment.model_validate({
            "dataset": "tiny", "teacher": teacher, "members": [], "rows": [_row(), _row(
                "dense_kd", "dense")], "budgets": {"3%": 1200}, "best_student": {"rule": "r"},
            "targets": {}, "settings": {"teacher": "ensemble"}, "student": {}, "bench": {},
            "threads": 1, "teacher_valid": {"rmse": 0.91, "ndcg@10": 0.05},
            "references": {"MostPop": {"ndcg@10": 0.02}}, "feature_variance_kept": None,
            "teacher_temperature": 2.0, "teacher_distribution": "whole catalogue",
            "curves": [{"method": "fisher_kd", "budget": "3%", "history": [{"loss": 1.0}]}],
            "criterion_check": None, "seconds": 3.0}),
        FisherAnalysis: FisherAnalysis(
            teacher="ensemble", dataset="tiny", focus_tasks=["ranking"], fisher=["true"],
            criterion="c", sigma2={"svd": 0.3}, models={"svd": {"validation": {}}},
            timings=timing),
        FisherExperiment: FisherExperiment(
            dataset="tiny", seed=0, threads=1, data={"dataset": "tiny"}, split={},
            settings={"sample": 100}, sigma2={"svd": 0.3}, timings=timing, summary={}),
        RunTimings: RunTimings.model_validate({
            "split": 0.5, "teachers": 10.0, "total": 10.5, "peak_rss_mb": {"split": 300.0},
            "peak_rss_per_stage": True, "environment": {"torch": "2.13.0"}}),
    }


@pytest.mark.parametrize("kind", list(OLD), ids=lambda k: k.__name__)
def test_each_result_round_trips_through_json_unchanged(tmp_path, kind):
    obj = _tiny()[kind]
    path = write_result(tmp_path / "r.json", obj)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    back = load_result(path, kind)
    assert type(back) is kind
    assert _same(back.model_dump(exclude_unset=True), obj.model_dump(exclude_unset=True))
    first = path.read_bytes()
    assert write_result(tmp_path / "again.json", back).read_bytes() == first   # same file


@pytest.mark.parametrize("kind", list(OLD), ids=lambda k: k.__name__)
def test_a_kept_file_without_a_version_reads_as_version_1(tmp_path, kind):
    raw = json.loads(OLD[kind].read_text())
    assert "schema_version" not in raw              # written before the field existed
    got = load_result(OLD[kind], kind)
    again = json.loads(write_result(tmp_path / "r.json", got).read_text())
    assert again.pop("schema_version") == 1
    assert _same(again, raw)                        # nothing added, dropped or changed


def test_kept_values_read_through_the_types():
    t = load_result(OLD[TeachersReport], TeachersReport)
    raw = json.loads(OLD[TeachersReport].read_text())
    assert t.ensemble["ndcg@10"] == raw["ensemble"]["ndcg@10"] > 0
    assert t.origin_ensemble["weights"] == {"svd": 0.4, "xdeepfm": 0.4, "autoint": 0.2}
    timings = load_result(OLD[RunTimings], RunTimings)
    secs = timings.stage_seconds()
    assert list(secs) == ["split", "teachers", "ensemble", "fisher", "distill", "total"]
    assert secs["total"] == pytest.approx(sum(v for k, v in secs.items() if k != "total"),
                                          rel=0.01)
    p = load_result(OLD[PakdExperiment], PakdExperiment)
    assert p.budgets is None and "budgets" not in p      # older than size budgets
    assert all(isinstance(r["params"], int) for r in p.rows)


def test_an_unknown_version_is_refused_naming_the_file_and_the_fix(tmp_path):
    path = write_result(tmp_path / "pakd_experiment.json", _tiny()[PakdExperiment])
    raw = json.loads(path.read_text())
    for bad in (SCHEMA_VERSION + 1, "one", True):
        path.write_text(json.dumps({**raw, "schema_version": bad}))
        with pytest.raises(PakdError) as e:
            load_result(path, PakdExperiment)
        msg = str(e.value)
        assert str(path) in msg and repr(bad) in msg
        assert f"version {', '.join(map(str, READS))}" in msg
        assert "upgrade pakd" in msg and "`pakd distill`" in msg


@pytest.mark.parametrize("kind,drop,key", [
    (PakdExperiment, lambda d: d["rows"][1].pop("params"), "rows[1].params"),
    (PakdExperiment, lambda d: d.pop("teacher"), "teacher"),
    (TeachersReport, lambda d: d["members"]["svd"].pop("arch"), "members.svd.arch"),
    (FisherAnalysis, lambda d: d["timings"]["svd"].pop("examples"), "timings.svd.examples"),
    (RunTimings, lambda d: d.pop("total"), "total"),
])
def test_a_missing_required_key_names_the_key_and_the_file(tmp_path, kind, drop, key):
    path = write_result(tmp_path / "result.json", _tiny()[kind])
    raw = json.loads(path.read_text())
    drop(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(PakdError) as e:
        load_result(path, kind)
    msg = str(e.value)
    assert str(path) in msg and f"key {key!r} is missing" in msg and kind.STAGE in msg


def test_a_value_of_the_wrong_type_is_named_and_nothing_is_changed(tmp_path):
    src = tmp_path / "timings.json"
    shutil.copy(OLD[RunTimings], src)
    raw = json.loads(src.read_text())
    src.write_text(json.dumps({**raw, "distill": "slow"}))
    before = src.read_bytes()
    with pytest.raises(PakdError, match=r"'distill': input should be a valid number"):
        load_result(src, RunTimings)
    assert src.read_bytes() == before
    src.write_text("[1, 2]")
    with pytest.raises(PakdError, match="not a pakd run timings"):
        load_result(src, RunTimings)


def test_setting_a_field_validates_it():
    p = _tiny()[PakdExperiment]
    p.references = {"MostPop": {"ndcg@10": 0.03}}
    assert p["references"]["MostPop"]["ndcg@10"] == 0.03 and "references" in p
    with pytest.raises(ValueError):
        p.references = {"MostPop": "high"}


def test_the_run_writes_every_result_with_its_version(pipeline_run):
    from pakd.rundir import RunDir
    rd = RunDir(pipeline_run)
    for path, kind in ((rd.teachers_json, TeachersReport), (rd.pakd_json, PakdExperiment),
                       (rd.fisher_json, FisherAnalysis), (rd.timings_json, RunTimings),
                       (rd.fisher_experiment_json, FisherExperiment)):
        assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION, path
        got = load_result(path, kind)
        assert _same(json.loads(write_result(rd.root / "copy.json", got).read_text()),
                     json.loads(path.read_text())), path
    (rd.root / "copy.json").unlink()


def _future(root: Path, rel: str, kind) -> Path:
    """A copy of the tiny ``kind`` at ROOT/rel that says a newer pakd wrote it."""
    path = write_result(root / rel, _tiny()[kind])
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))
    return path


def test_readers_refuse_a_newer_file_through_the_loader(tmp_path):
    """The report, the seeds' pooling and the docs' tables read through `load_result`: a
    file from a newer pakd is the versioned error, not a KeyError deep in a table."""
    import importlib.util

    from pakd.recipes import report as report_recipe
    from pakd.recipes.seeds import pool
    from pakd.report.pakd import references
    from pakd.rundir import RunDir
    rd = RunDir(tmp_path / "run")
    path = _future(rd.root, "teachers.json", TeachersReport)
    with pytest.raises(PakdError, match=r"teachers.json has schema_version 99.*upgrade pakd"):
        references(rd)
    with pytest.raises(PakdError, match="schema_version 99"):
        report_recipe.run(None, rd)
    spec = importlib.util.spec_from_file_location(
        "gen_results", Path(__file__).resolve().parents[1] / "docs" / "gen_results.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with pytest.raises(PakdError, match=str(path)):
        gen.teachers(str(rd.root))
    _future(tmp_path / "seeds" / "seed-0", "analysis_results/pakd_experiment.json",
            PakdExperiment)
    with pytest.raises(PakdError, match=r"pakd_experiment.json has schema_version 99"):
        pool(tmp_path / "seeds", [0])


def test_a_finished_work_marker_is_reused_only_under_its_fingerprint(tmp_path):
    from pakd.results import FisherPart, StudentRecord, load_marker
    row = _row()
    path = write_result(tmp_path / "x.row.json", StudentRecord(
        fingerprint="abc", row=row, curve={"method": "fisher_kd", "history": []}))
    got = load_marker(path, StudentRecord, "abc")
    assert got.row["params"] == 1200 and got.row["ndcg@10"] == row["ndcg@10"]
    assert load_marker(path, StudentRecord, "other") is None           # other settings
    assert load_marker(tmp_path / "missing.json", StudentRecord, "abc") is None
    raw = json.loads(path.read_text())
    for bad in ({**raw, "schema_version": 99}, {**raw, "row": {"method": "x"}}):
        path.write_text(json.dumps(bad))                             # newer pakd, damaged:
        assert load_marker(path, StudentRecord, "abc") is None       # the work is redone
    part = write_result(tmp_path / "svd.json", FisherPart(fingerprint="f", result={"a": 1},
                                                          seconds=2.5))
    assert load_marker(part, FisherPart, "f").seconds == 2.5
