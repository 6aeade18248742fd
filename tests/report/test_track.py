"""`pakd run --track mlflow`: one MLflow run per pakd run, a nested run per stage."""
import shutil
import sys
import types

import pytest

from pakd.errors import PakdError
from pakd.report import track


def test_spec_and_missing_extra(monkeypatch):
    assert track.parse("mlflow") is None
    assert track.parse("mlflow=http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    for bad in ("wandb", "mlflow=", "ml"):
        with pytest.raises(PakdError, match="mlflow or mlflow=URI"):
            track.parse(bad)
    monkeypatch.setitem(sys.modules, "mlflow", None)          # as if not installed
    with pytest.raises(PakdError, match=r"pip install 'pakd\[track\]'"):
        track.require()
    from pakd.cli import main
    assert main(["run", "--run", "nowhere-at-all", "--track", "mlflow"]) == 2


def test_metric_names_are_ones_mlflow_takes():
    assert track.metric_key("fisher_kd", "r0.40", "ndcg@10") == "fisher_kd.r0.40.ndcg_at_10"
    assert track.metric_key("member", "a b", "x(y)") == "member.a b.x_y_"


def _stub_stages(monkeypatch):
    """The stage list with recipes that do nothing: the copied run already holds every
    stage's files, so the tracker logs them without training anything."""
    import pakd.recipes as recipes
    stub = types.SimpleNamespace(run=lambda cfg, rd, enc=None: "summary")
    monkeypatch.setattr(recipes, "STAGES", {n: stub for n in recipes.STAGES})
    return recipes


def _copy(run, dest):
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("per_user", "*.scores.safetensors",
                                                             "*.state.pt"))
    from pakd.config import build_config, load_run_config
    from pakd.rundir import RunDir
    rd = RunDir(dest)
    return build_config(base=load_run_config(rd.config)), rd


def test_each_stage_is_a_nested_run_with_settings_metrics_and_files(pipeline_run, tmp_path,
                                                                     monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow
    recipes = _stub_stages(monkeypatch)
    cfg, rd = _copy(pipeline_run, tmp_path / "runs" / "a")
    assert recipes.run_all(cfg, rd, track="") == "summary"   # "": the default store
    store = tmp_path / "runs" / "mlruns"                        # beside the run
    assert store.is_dir()
    mlflow.set_tracking_uri(store.as_uri())
    df = mlflow.search_runs(experiment_names=["pakd"])
    parent = df[df["tags.mlflow.parentRunId"].isna()]
    assert len(parent) == 1 and parent.iloc[0]["tags.mlflow.runName"] == "a"
    assert parent.iloc[0]["tags.seed"] == str(cfg.seed) and parent.iloc[0]["tags.env.torch"]
    pid = parent.iloc[0]["run_id"]
    nested = df[df["tags.mlflow.parentRunId"] == pid].set_index("tags.mlflow.runName")
    assert set(nested.index) == set(recipes.STAGES)
    assert (df["status"] == "FINISHED").all()
    d = nested.loc["distill"]
    assert d["params.distill.budgets"] == str(cfg.distill.budgets)
    from pakd.rundir import read_json
    row = next(r for r in read_json(rd.pakd_json)["rows"] if r["method"] == "fisher_kd")
    key = f"metrics.fisher_kd.{row['budget'].replace('%', 'pct')}.ndcg_at_10"
    assert d[key] == pytest.approx(row["ndcg@10"])
    ens = read_json(rd.teachers_json)
    assert nested.loc["ensemble"]["metrics.member.svd.rmse"] == pytest.approx(
        ens["members"]["svd"]["rmse"])
    assert nested.loc["fisher"]["params.fisher.sample"] == str(cfg.fisher.sample)
    client = mlflow.tracking.MlflowClient(store.as_uri())
    names = lambda rid, p=None: {a.path for a in client.list_artifacts(rid, p)}  # noqa: E731
    assert "report.html" in names(pid) and "report.html" in names(nested.loc["report"]["run_id"])
    saved = names(d["run_id"], "models/saved")
    assert "models/saved/best_student_model.safetensors" in saved


def test_a_store_that_cannot_be_written_warns_once_and_the_run_goes_on(pipeline_run, tmp_path,
                                                                       monkeypatch):
    pytest.importorskip("mlflow")
    recipes = _stub_stages(monkeypatch)
    cfg, rd = _copy(pipeline_run, tmp_path / "b")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    from pakd.runtime import log
    warned = []
    monkeypatch.setattr(log, "warning", lambda msg, *a: warned.append(msg % a))
    assert recipes.run_all(cfg, rd, track=(blocker / "mlruns").as_uri()) == "summary"
    assert len(warned) == 1 and "goes on untracked" in warned[0] and str(rd.root) in warned[0]
    assert rd.timings_json.is_file()                     # the run's own files as always
