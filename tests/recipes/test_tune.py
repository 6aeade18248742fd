"""`pakd tune` on the shared quick run: a 3-trial study under a tiny cap, resumed, its
chosen settings reproduced by `pakd distill`, --final on the test part; the test part is
never read by the search; bad input refused before anything is written."""
import contextlib
import io
import json
import re
import shutil

import pytest

optuna = pytest.importorskip("optuna")

from pakd.cli import main  # noqa: E402


def _pakd(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report.html", "mlruns"))
    return dst


def _study(run):
    return optuna.load_study(study_name="pakd-tune", storage=f"sqlite:///{run / 'tune.db'}")


@pytest.fixture(scope="module")
def tuned(pipeline_run, tmp_path_factory):
    """A cap below the smallest student (refused, naming its size), then a 3-trial study
    under a cap a few times that size, every full-catalogue ranking's part recorded."""
    run = _copy(pipeline_run, tmp_path_factory.mktemp("tune") / "run")
    before = (run / "run.yaml").read_text()
    rc, refused = _pakd("tune", "--run", run, "--max-params", 1, "--trials", 3, "-q")
    assert rc == 2 and not (run / "tune.db").exists() and (run / "run.yaml").read_text() == before
    smallest = int(re.search(r"keeps ([\d,]+) parameters", refused).group(1).replace(",", ""))
    cap = 4 * smallest
    import pakd.evaluate as E
    parts, real = [], E.relevant_matrix

    def recorded(enc, part, min_rating):
        parts.append(part)
        return real(enc, part, min_rating)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(E, "relevant_matrix", recorded)
        rc, err = _pakd("tune", "--run", run, "--max-params", cap, "--trials", 3, "--jobs", 1,
                        "--threads", 1, "-q")
    assert rc == 0, err
    return {"run": run, "cap": cap, "smallest": smallest, "refused": refused, "parts": parts}


def test_a_cap_below_the_smallest_student_is_refused_naming_it(tuned):
    msg = tuned["refused"]
    assert "--max-params 1 is below the smallest student this search can make" in msg
    assert f"Give --max-params {tuned['smallest']}" in msg


def test_a_three_trial_study_keeps_its_trials_front_and_choice(tuned):
    run = tuned["run"]
    study = _study(run)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 3 == len(study.trials)
    assert study.user_attrs["caps"] == {"max_params": tuned["cap"]}
    assert study.trials[0].user_attrs["reference"]              # the run's own settings first
    assert study.trials[0].params["distill.prune_from"] == "dense"   # as the run's students
    for t in study.trials:
        if t.state.name == "COMPLETE":
            a = t.user_attrs
            assert t.values == [a["valid"]["ndcg@10"], a["valid"]["rmse"], a["params"]]
            assert a["bytes"] > 4 * a["params"] and a["latency_ms"] > 0
            assert 0 < a["valid"]["ndcg@10"] <= 1
    front = json.loads((run / "analysis_results" / "tune_front.json").read_text())
    assert front["counts"]["complete"] + front["counts"]["pruned"] == 3
    assert front["chosen"]["trial"] in front["front"]
    assert (run / "analysis_results" / "tune_front.png").stat().st_size > 5000
    md = (run / "analysis_results" / "tune_front.md").read_text()
    assert "## Pareto front" in md and "(chosen)" in md
    assert f"max_params: {tuned['cap']}" in (run / "run.yaml").read_text()


def test_every_trial_respects_the_cap(tuned):
    cap = tuned["cap"]
    trials = _study(tuned["run"]).trials
    assert any(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        a = t.user_attrs
        assert t.params["budget"] <= cap
        if "params" in a:
            assert a["target_params"] <= cap and a["params"] <= cap
        else:                        # not trained: its architecture's least is over the cap
            assert a["least_params"] > cap and "over the cap" in a["reason"]


def test_the_search_never_reads_the_test_part(tuned, tiny_enc):
    from pakd.errors import PakdError
    from pakd.tune.trial import without_test
    assert "valid" in tuned["parts"] and "test" not in tuned["parts"]
    view = without_test(tiny_enc)
    assert len(view.parts["valid"]) == len(tiny_enc.parts["valid"])
    with pytest.raises(PakdError, match="asked for the test part"):
        view.parts["test"]


def test_a_study_is_resumed_only_with_its_own_caps_and_adds_trials(tuned):
    run, cap = tuned["run"], tuned["cap"]
    yaml_before = (run / "run.yaml").read_text()
    rc, err = _pakd("tune", "--run", run, "--max-params", cap, "--trials", 5, "-q")
    assert rc == 2 and "already holds 3 trial(s): add --resume" in err
    rc, err = _pakd("tune", "--run", run, "--max-params", cap - 1, "--trials", 5, "--resume",
                    "-q")
    assert rc == 2 and f"made with --max-params {cap}, this command gives --max-params " \
                       f"{cap - 1}" in err
    assert (run / "run.yaml").read_text() == yaml_before
    first = [(t.number, t.state, t.values, t.params) for t in _study(run).trials]
    rc, err = _pakd("tune", "--run", run, "--trials", 5, "--resume", "--jobs", 1, "--threads",
                    1, "-q")                         # no cap flag: the study's own
    assert rc == 0, err
    trials = _study(run).trials
    assert len(trials) == 5 and [(t.number, t.state, t.values, t.params)
                                 for t in trials[:3]] == first
    assert all(t.user_attrs.get("params", 0) <= cap for t in trials)


def test_the_chosen_yaml_reproduces_the_trials_valid_metric(tuned, tmp_path):
    run = _copy(tuned["run"], tmp_path / "again")
    front = json.loads((run / "analysis_results" / "tune_front.json").read_text())
    chosen = front["chosen"]
    rc, err = _pakd("distill", "--run", run, "--config", run / "analysis_results" /
                    "tune_chosen.yaml", "--threads", 1, "-q", "--bench-memory", "false",
                    "--bench-seconds", "0.02")
    assert rc == 0, err
    rows = json.loads((run / "analysis_results" / "pakd_experiment.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["params"] == chosen["params"]
    assert rows[0]["valid"]["ndcg@10"] == pytest.approx(chosen["valid_ndcg@10"], abs=1e-12)
    assert rows[0]["valid"]["rmse"] == pytest.approx(chosen["valid_rmse"], abs=1e-12)
    # a trial that pruned the run's dense student: its settings name that student, which
    # pakd distill prunes (no dense student trained anew) to the trial's figures
    from pakd.config import RunConfig, load_run_config
    from pakd.rundir import RunDir
    from pakd.tune.outcome import chosen_yaml
    first = _study(run).trials[0]
    cfg = RunConfig.model_validate(load_run_config(run / "run.yaml"))
    text = chosen_yaml(cfg, RunDir(tuned["run"]), first)
    assert "dense_from: " + str((tuned["run"] / "models" / "students" / "dense_kd_dense")
                                .resolve()) in text
    (tmp_path / "first.yaml").write_text(text)
    rc, err = _pakd("distill", "--run", run, "--config", tmp_path / "first.yaml",
                    "--threads", 1, "-q", "--bench-memory", "false", "--bench-seconds", "0.02")
    assert rc == 0, err
    rows = json.loads((run / "analysis_results" / "pakd_experiment.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["fisher_kd"]
    assert rows[0]["valid"]["ndcg@10"] == pytest.approx(first.values[0], abs=1e-12)
    assert rows[0]["valid"]["rmse"] == pytest.approx(first.values[1], abs=1e-12)


def test_final_trains_the_chosen_student_once_and_reports_it_on_test(tuned):
    from pakd.models import load
    from pakd.recommend import top_items
    from pakd.report.html import _Figures, _tune
    from pakd.rundir import RunDir
    run = tuned["run"]
    rc, err = _pakd("tune", "--run", run, "--final", "--threads", 2, "-q")   # trains on 1
    assert rc == 0, err
    fin = json.loads((run / "analysis_results" / "tune_final.json").read_text())
    assert fin["reproduced"]["difference"] < 1e-12
    assert fin["tuned"]["params"] <= tuned["cap"] and fin["tuned"]["test"]["ndcg@10"] > 0
    d, lo, hi = (fin["paired"]["ndcg@10"][k] for k in ("diff", "low", "high"))
    assert lo <= d <= hi and d == pytest.approx(fin["tuned"]["test"]["ndcg@10"]
                                                - fin["default"]["test"]["ndcg@10"])
    model, meta = load(run / "models" / "tuned" / "tuned_student")
    assert model.n_params() == fin["tuned"]["params"] and meta["trial"] == fin["trial"]
    assert len(top_items(run / "models" / "tuned" / "tuned_student", "1", k=3)["items"]) == 3
    section = _tune(RunDir(run), _Figures())          # the run page's tuning section
    assert "tuned − default" in section and section.count("<svg") == 1


def test_bad_input_is_refused_before_anything_is_written(tuned, tmp_path):
    run = tuned["run"]
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("split.csv", "split.json", "run.yaml"):
        shutil.copy(run / f, bare / f)
    rc, err = _pakd("tune", "--run", bare, "--max-params", 500, "--trials", 2, "-q")
    assert rc == 2 and "has no trained teacher (ensemble)" in err
    assert not (bare / "tune.db").exists()
    rc, err = _pakd("tune", "--run", run, "--storage", f"sqlite:///{tmp_path}/no/such/t.db",
                    "--max-params", 500, "--trials", 2, "-q")
    assert rc == 2 and "cannot be opened" in err
    rc, err = _pakd("tune", "--run", run, "--max-params", 500, "--max-bytes", 9000, "-q")
    assert rc == 2 and "give one cap" in err
