"""The whole pipeline on tiny data with the quick profile: every artefact, every key."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pakd.cli import main

METRICS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10")


@pytest.fixture(scope="module")
def run(pipeline_run):
    return pipeline_run


def test_teachers_json(run):
    t = json.loads((run / "teachers.json").read_text())
    assert set(t["members"]) == {"svd", "xdeepfm", "autoint", "ease"}
    for m in list(t["members"].values()) + [t["ensemble"], t["origin_ensemble"]]:
        for k in METRICS + ("params",):
            assert k in m and m[k] is not None, k
        assert math.isfinite(m["rmse"]) and 0 <= m["ndcg@10"] <= 1
    e = t["ensemble"]                 # auto weights: fitted on valid; ease ranks only
    assert set(e["rating_mix"]) == {"svd", "xdeepfm", "autoint"}
    assert sum(e["ranking_mix"].values()) == pytest.approx(1.0)
    assert e["tasks"]["ease"] == "ranking"
    o = t["origin_ensemble"]          # the origin report's 0.4/0.4/0.2, reported beside
    assert o["rating_mix"] == pytest.approx({"xdeepfm": 2 / 3, "autoint": 1 / 3})
    assert o["ranking_mix"] == pytest.approx({"svd": 2 / 3, "autoint": 1 / 3})
    assert t["members"]["ease"]["params"] == 60 ** 2
    # each member's cost beside its accuracy: parameters, training and catalogue scoring
    scored = [m["score_seconds"] for m in t["members"].values()]
    assert all(s is not None and s >= 0 for s in scored)
    assert t["ensemble"]["score_seconds"] == pytest.approx(sum(scored))
    assert "catalogue score s" in (run / "teachers.md").read_text()
    rr = t["rerank"]                  # re-rankers of svd's top-N, exact full-catalogue metrics
    assert rr["retrieval"] == "svd" and set(rr["by_n"]) == {"5", "20"}
    assert set(rr["by_n"]["5"]) == {"xdeepfm", "autoint", "ease", "ensemble", "xdeepfm + svd",
                                    "autoint + svd", "ease + svd"}
    from pakd.rerank import BLEND_GRID
    assert rr["by_n"]["5"]["xdeepfm + svd"]["weight"] in BLEND_GRID
    assert "| xdeepfm + svd |" in (run / "teachers.md").read_text()
    d, lo, hi = rr["by_n"]["5"]["xdeepfm"]["vs_retrieval"]["ndcg@10"]
    assert lo <= d <= hi
    assert {"global_mean", "mostpop"} <= set(t["baselines"])
    assert (run / "teachers.md").read_text().count("|") > 20
    for n in ("svd", "xdeepfm", "autoint", "ease"):
        assert (run / "teachers" / f"{n}.safetensors").is_file()


def test_fisher_outputs(run):
    a = run / "analysis_results"
    res = json.loads((a / "ensemble_fisher_analysis.json").read_text())
    for name, m in res["models"].items():
        assert {"sensitivity", "pruning_friendliness", "layers", "groups", "plan",
                "validation"} <= set(m), name
        assert 0 <= m["pruning_friendliness"] <= 1
        v = m["validation"]
        assert {"spearman_empirical", "spearman_true", "spearman_magnitude", "groups_tested"} <= set(v)
        assert v["groups_tested"] > 0
        # the same removals measured on the Fisher's own train sample, for every objective
        tr = v["train_sample"]["by_objective"]
        assert set(tr) == set(v["by_objective"])
        # the Taylor predictor beside the Fisher and magnitude, measured on valid and test
        c = v["test_part"]["by_objective"][v["objective"]]
        assert {"spearman_true", "spearman_taylor", "spearman_magnitude", "kendall_taylor",
                "spearman_taylor_ci95"} <= set(c)
        # the headline is the test part's (out of sample); valid's is kept as in-sample
        assert v["headline_part"] == "test" and v["in_sample"]["part"] == "valid"
        assert v["spearman_taylor"] == c["spearman_taylor"] or (
            v["spearman_taylor"] != v["spearman_taylor"])            # both NaN
        assert set(v["beats"]) == {"empirical_vs_magnitude", "true_vs_magnitude",
                                   "taylor_vs_magnitude"}
        assert all("measured_test" in p and f"{v['objective']}/taylor" in p["predicted"]
                   for p in v["points"])
        assert all(len(p["measured_train"]) == len(p["measured"]) for p in v["points"])
        assert 0 <= v["share_lowering_valid_loss"] <= 1
        assert m["plan"]["params_after"] < m["params"]
        # per group kind as well as pooled; units without a path counted apart
        assert set(v["by_kind"]) == set(v["kinds_tested"])
        assert all(c is None or c["units"] >= 3 for c in v["by_kind"].values())
        assert v["units_without_path"][v["objective"]] >= 0
    exp = json.loads((a / "movielens_fisher_experiment.json").read_text())
    assert {"dataset", "split", "settings", "timings"} <= set(exp)
    text = (a / "ensemble_fisher_analysis_summary.md").read_text()
    assert "Settings: teacher ensemble" in text and "{" not in text   # no dict reprs
    assert not (a / "movielens_fisher_experiment_summary.md").exists()   # one summary
    for p in ("fisher_layer_importance.png", "fisher_group_importance.png",
              "fisher_predicted_vs_measured.png"):
        assert (run / "plots" / p).stat().st_size > 1000


def test_pakd_outputs(run, capsys):
    res = json.loads((run / "analysis_results" / "pakd_experiment.json").read_text())
    row_keys = set(METRICS) | {"params", "throughput_rows_per_s", "latency_ms_p50",
                               "latency_ms_p99", "peak_rss_mb"}
    assert row_keys | {"file_bytes"} <= set(res["teacher"])
    methods = {r["method"] for r in res["rows"]}
    assert methods == {"fisher_kd", "taylor_kd", "magnitude_kd", "random_kd", "fisher_ft",
                       "scratch", "final_kd", "mf_labels", "lightweight_kd", "dense_kd",
                       "fisher_kd_no_ranking", "fisher_kd_no_rating", "fisher_kd_no_feature"}
    # --bench-memory chosen (the default): a fresh-process memory probe of the teacher, its
    # members, the dense and the best student only
    best = res["best_student"]["file"]
    probed = {r["file"] for r in res["rows"] if "peak_rss_mb" in r}
    dense = {r["file"] for r in res["rows"] if r["method"] == "dense_kd"}
    assert probed == dense | {best} and all("peak_rss_mb" in m for m in res["members"])
    by = {r["method"]: r for r in res["rows"]}
    target = res["budgets"]["0.5"]
    # the pruning students with KD start from the trained dense student (--prune-from
    # dense); the architecture baselines copy fisher_kd's
    dense_name = by["dense_kd"]["file"].split("/")[-1]
    assert {by[m]["reference"] for m in ("fisher_kd", "magnitude_kd", "random_kd",
                                         "taylor_kd", "fisher_kd_no_rating")} == {dense_name}
    assert by["fisher_ft"]["reference"] is None and by["lightweight_kd"]["reference"] is None
    assert by["final_kd"]["reference"] == by["fisher_kd"]["file"].split("/")[-1]
    for r in res["rows"]:
        keys = row_keys if r["file"] in probed else row_keys - {"peak_rss_mb"}
        assert keys | {"bytes_fp32", "bytes_int8", "file_bytes"} <= set(r)
        assert r["budget"] == ("dense" if r["method"] == "dense_kd" else "0.5")
        assert "speedup_throughput" in r and "rmse_retention_pct" in r
        assert r["params_vs_origin_pct"] > r["params_vs_teacher_pct"]   # ease adds items^2
        assert r["bytes_fp32"] == 4 * r["params"]
    for m in ("fisher_kd", "taylor_kd", "magnitude_kd", "random_kd", "fisher_ft"):
        # the budget is met, never exceeded, and used up
        assert 0.9 * target <= by[m]["params"] <= target, (m, by[m]["params"], target)
        assert by[m]["model"] == "tower_student"
    assert by["lightweight_kd"]["model"] == "lightweight_model"
    assert by["lightweight_kd"]["params"] <= target
    assert by["scratch"]["params"] == by["fisher_kd"]["params"] == by["final_kd"]["params"]
    assert by["scratch"]["arch"] == by["final_kd"]["arch"] == by["fisher_kd"]["arch"]
    # a plain MF of the same size: IDs only, no MLP, at most the budget
    mf = by["mf_labels"]
    assert mf["arch"]["hidden"] == [] and not mf["arch"]["side_fields"]
    assert 0.7 * target <= mf["params"] <= target
    assert by["dense_kd"]["pruning_ratio"] == 0
    assert by["fisher_kd_no_ranking"]["params"] <= target
    for r in res["rows"]:            # speed-ups measured interleaved with the teacher
        lo, hi = r["speedup_latency_range"]
        assert lo <= r["speedup_latency"] <= hi and r["bench_rounds"] == 1
        assert set(r["valid"]) == {"rmse", "ndcg@10"}
    assert {"load_average_before", "load_average_after", "rounds"} <= set(res["bench"])
    for r in [res["teacher"]] + res["rows"]:          # intervals from per-user results
        lo, hi = r["ci95"]["ndcg@10"]
        assert lo <= r["ndcg@10"] <= hi
    assert "fisher_kd" in by["magnitude_kd"]["paired"] and "fisher_kd" not in by["fisher_kd"]["paired"]
    d, lo, hi = by["fisher_kd"]["paired"]["teacher"]["ndcg@10"]
    assert lo <= d <= hi
    assert (run / "per_user" / "fisher_kd_r0_5.test.npz").is_file()
    assert (run / "plots" / "pakd_paired_differences.png").stat().st_size > 1000
    best = res["best_student"]
    assert best["saved"] and "valid" in best["rule"]
    chk = res["criterion_check"]            # the criterion PAKD prunes with, on dense_kd
    assert chk["units_tested"] == 12 and chk["params"] == by["dense_kd"]["params"]
    assert chk["pooled"]["units"] + chk["units_without_path"] == 12
    assert {"train_spearman_fisher", "valid_spearman_fisher_raw",
            "train_spearman_magnitude_ci95"} <= set(chk["pooled"])
    md = (run / "analysis_results" / "pakd_experiment_summary.md").read_text()
    assert "{" not in md and "[" not in md.split("## Best student")[0]
    saved = run / "models" / "saved" / "best_student_model.safetensors"
    assert saved.is_file() and saved.with_suffix(".json").is_file()
    assert main(["recommend", "--model", str(saved), "--user", "3", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("Film") == 5 and "skipping" in out


def test_run_summary_and_stage_timings(run):
    summary = (run / "summary.md").read_text()
    assert "best student" in summary and "teacher (ensemble)" in summary
    t = json.loads((run / "timings.json").read_text())
    assert set(t) >= {"split", "teachers", "ensemble", "fisher", "distill", "total"}
    assert t["total"] >= t["teachers"] + t["distill"]
    rss = t["peak_rss_mb"]           # each stage's own peak resident memory
    assert set(rss) == {"split", "teachers", "ensemble", "fisher", "distill"}
    assert all(50 < v < 24 * 1024 for v in rss.values())
    assert "Peak memory per stage (RSS, MB)" in summary
    env = t["environment"]          # what the figures depend on besides settings and data
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["torch_threads"] >= 1 and f"torch {torch.__version__}" in summary
    assert env["cpu"]["model"] and env["packages"]["torch"] == torch.__version__
    assert "requirements.lock" in summary and "{" not in summary      # one line, no dicts
    # NDCG@10 with only the held-out items rated >= 4 relevant, beside NDCG@10
    assert "NDCG@10 ≥ 4 stars" in summary
    teachers = json.loads((run / "teachers.json").read_text())
    assert all(0 <= m["ndcg@10_rel4"] <= 1 for m in teachers["members"].values())
    assert "NDCG@10 ≥ 4 stars" in (run / "teachers.md").read_text()


def test_stage_reruns_alone_from_run_yaml(run):
    assert main(["ensemble", "--run", str(run), "--weights", "auto", "-q"]) == 0
    t = json.loads((run / "teachers.json").read_text())
    assert sum(t["ensemble"]["ranking_mix"].values()) == pytest.approx(1.0)


def test_als_member_trains_and_joins_an_ensemble(run, tmp_path):
    """als is selectable: trained alone into a copy of the run, then one of the members of
    an auto-weighted ensemble (ranking only)."""
    import shutil
    r = tmp_path / "als"
    shutil.copytree(run, r)
    assert main(["train", "--run", str(r), "--models", "als", "-q"]) == 0
    meta = json.loads((r / "teachers" / "als.json").read_text())
    assert meta["fit"]["reg"] in (1.0, 10.0) and len(meta["fit"]["history"]) == 2
    assert main(["ensemble", "--run", str(r), "--algorithms", "svd,als", "-q"]) == 0
    t = json.loads((r / "teachers.json").read_text())
    assert t["ensemble"]["tasks"] == {"svd": "balance", "als": "ranking"}
    assert 0 <= t["members"]["als"]["ndcg@10"] <= 1



@pytest.mark.parametrize("name", ["knn", "uknn", "knn_interp"])
def test_knn_member_joins_the_rating_mix_and_exports(run, tmp_path, name):
    """knn (and uknn, its user side, and knn_interp) is selectable: fitted alone into a copy
    of the run (its neighbour count chosen on valid RMSE), a rating-only member of an
    auto-weighted ensemble, whose ONNX graphs match it (the rating graph runs the neighbour
    lookup, and knn_interp's graph each pair's solve)."""
    import shutil

    from pakd.deploy.deployable import load_deployable
    from pakd.deploy.onnx_export import export
    r = tmp_path / name
    shutil.copytree(run, r)
    assert main(["train", "--run", str(r), "--models", name, "-q"]) == 0
    meta = json.loads((r / "teachers" / f"{name}.json").read_text())
    tried = {h["k"]: h["valid_rmse"] for h in meta["fit"]["history"]}
    assert set(tried) == ({5, 10} if name == "knn_interp" else {10, 20})
    assert meta["fit"]["k"] == min(tried, key=tried.get)
    assert meta["valid"]["rmse"] == pytest.approx(tried[meta["fit"]["k"]], abs=1e-6)
    assert main(["ensemble", "--run", str(r), "--algorithms", f"svd,ease,{name}",
                 "--rating-offset", "true", "-q"]) == 0
    t = json.loads((r / "teachers.json").read_text())
    assert t["ensemble"]["tasks"] == {"svd": "balance", "ease": "ranking", name: "rating"}
    assert set(t["ensemble"]["rating_mix"]) == {"svd", name}
    assert name not in t["ensemble"]["ranking_mix"]
    assert t["ensemble"]["rating_offset"] != 0.0
    ens = json.loads((r / "teachers" / "ensemble.json").read_text())
    assert ens["rating_offset"] == t["ensemble"]["rating_offset"]
    got = export(load_deployable(r / "teachers" / "ensemble"), tmp_path / "onnx", k=10,
                 bench_seconds=0.02)
    assert got["parity"]["passed"]


def sweep_rows(cfg, rd):
    """The sweep's rows for the settings ``cfg`` on the run ``rd``, as the recipe trains
    them (the teacher's signals, the budgets' targets, the plan)."""
    from pakd.data import load_encoded
    from pakd.distill.signals import teacher_signals
    from pakd.distill.sweep import Context, plan, run_sweep
    from pakd.evaluate import evaluate
    from pakd.recipes.distill import size_targets
    from pakd.scores import teacher_scores
    enc = load_encoded(cfg, rd)
    teacher, scores = teacher_scores(cfg, rd, enc)
    signals = teacher_signals(teacher, enc, scores, list_top=cfg.distill.list_top,
                              feature_dim=cfg.distill.feature_dim)
    valid = evaluate(teacher, enc, "valid", **cfg.eval.kwargs(), scores=scores)
    budgets, sizes = size_targets(cfg, rd, enc)
    ctx = Context(cfg, rd, enc, signals, {k: valid[k] for k in ("rmse", "ndcg@10")}, {})
    return [r for r, _ in run_sweep(ctx, *plan(cfg, budgets, sizes))]


def test_students_in_worker_processes_equal_students_trained_inline(run, tmp_path):
    """The sweep's process pool changes nothing but the wall time."""
    import shutil

    from pakd.config import build_config, load_run_config
    from pakd.rundir import RunDir
    rows = {}
    for workers in (1, 2):
        rd = RunDir(tmp_path / f"w{workers}")
        shutil.copytree(run, rd.root)
        cfg = build_config(base=load_run_config(rd.config), overrides={
            "distill.methods": ["magnitude_kd", "fisher_kd", "scratch"],
            "distill.ablation": None, "distill.workers": workers, "quiet": True})
        rows[workers] = sweep_rows(cfg, rd)
    # the pruned students start from dense_kd (trained first, though not listed)
    assert [r["method"] for r in rows[2]] == ["dense_kd", "fisher_kd", "magnitude_kd", "scratch"]
    for a, b in zip(rows[1], rows[2]):
        for k in ("params", "rmse", "ndcg@10", "auc", "valid", "arch", "epochs_run"):
            assert a[k] == b[k], (a["method"], k)


def test_sweep_resume_keeps_finished_students_and_retrains_the_rest(run, tmp_path):
    """Issue 15, item 1: each sweep student is saved with a finished-row marker as it ends;
    --resume keeps those made under the same settings and teacher, trains the others, and
    the rows equal an uninterrupted sweep's. Other settings invalidate the kept rows."""
    import shutil

    from pakd.config import build_config, load_run_config
    from pakd.rundir import RunDir
    rd = RunDir(tmp_path / "r")
    shutil.copytree(run, rd.root)

    def sweep(**over):
        cfg = build_config(base=load_run_config(rd.config), overrides={
            "distill.methods": ["magnitude_kd", "fisher_kd", "scratch"],
            "distill.ablation": None, "distill.workers": 1, "quiet": True, **over})
        return sweep_rows(cfg, rd)

    first = sweep()
    stems = [Path(r["file"]) for r in first]
    assert all(rd.row_of(s).is_file() for s in stems)
    lost = stems[0]                                   # as if killed before it finished
    rd.row_of(lost).unlink()
    stamp = {s: rd.weights(s).stat().st_mtime_ns for s in stems}
    again = sweep(resume=True)
    changed = [s for s in stems if rd.weights(s).stat().st_mtime_ns != stamp[s]]
    assert changed == [lost]
    drop = ("train_seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
        [{k: v for k, v in r.items() if k not in drop} for r in first]
    sweep(resume=True, **{"distill.epochs": 1})     # another budget: nothing is kept
    assert all(rd.weights(s).stat().st_mtime_ns != stamp[s] for s in stems if s != lost)


def test_recommend_refuses_another_data_sets_split(run, tmp_path, capsys):
    """Issue 15: `recommend --run` at another data set's split skipped that split's items
    without a word, so seen items could be recommended."""
    other = tmp_path / "other"
    assert main(["data", "split", "--run", str(other), "-q"]) == 0
    best = str(run / "models" / "saved" / "best_student_model")
    assert main(["recommend", "--model", best, "--user", "1", "--run", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not trained on this run's split" in err and "--run" in err
    assert main(["recommend", "--model", best, "--user", "1"]) == 0


def test_fisher_resume_keeps_finished_members(run, tmp_path):
    """Issue 15, item 1: each member's Fisher analysis is kept as it finishes; --resume
    reuses it under the same settings and teachers, and the analysis equals a fresh one."""
    import shutil
    r = tmp_path / "f"
    shutil.copytree(run, r)
    parts = sorted(p.name for p in (r / "analysis_results" / "fisher_parts").glob("*.json"))
    assert parts == ["autoint.json", "svd.json", "xdeepfm.json"]

    def figures():
        out = json.loads((r / "analysis_results" / "ensemble_fisher_analysis.json").read_text())
        out.pop("timings")
        for m in out["models"].values():
            m.pop("timings", None)
        return json.dumps(out, sort_keys=True)

    before = figures()
    stamp = (r / "analysis_results" / "fisher_parts" / "svd.json").stat().st_mtime_ns
    assert main(["fisher", "--run", str(r), "-q", "--resume"]) == 0
    assert (r / "analysis_results" / "fisher_parts" / "svd.json").stat().st_mtime_ns == stamp
    assert "analysis kept from an earlier run" in (r / "pakd.log").read_text()
    assert figures() == before


def test_budgets_are_met_exactly_and_refused_outside_the_student(run, tmp_path):
    """--budgets as shares of the run's svd + xdeepfm + autoint, as parameter counts and as
    ratios: each student keeps at most its target and uses it up to less than one unit; a
    budget at or above the dense student, or below what it keeps with one unit per group,
    stops before training with the fix."""
    import shutil

    from pakd.config import build_config, load_run_config
    from pakd.data import load_encoded
    from pakd.distill.students import make_student
    from pakd.errors import PakdError
    from pakd.distill.students import origin_params
    from pakd.recipes.distill import size_targets
    from pakd.rundir import RunDir
    rd = RunDir(tmp_path / "r")
    shutil.copytree(run, rd.root)

    def cfg(budgets):
        return build_config(base=load_run_config(rd.config), overrides={
            "distill.budgets": budgets, "distill.methods": ["fisher_kd", "magnitude_kd"],
            "distill.ablation": None, "distill.workers": 1, "quiet": True})
    c = cfg(["15%", "0.6"])
    enc = load_encoded(c, rd)
    origin = origin_params(c, enc.schema)
    trained = sum(json.loads((rd.root / "teachers" / f"{n}.json").read_text())["params"]
                  for n in ("svd", "xdeepfm", "autoint"))
    assert origin == trained                  # counted from the architectures
    dense = make_student(c, enc).n_params()
    _, sizes = size_targets(c, rd, enc)
    assert sizes == {"15%": int(0.15 * origin), "0.6": int(dense * 0.4)}
    for row in sweep_rows(c, rd):
        if row["method"] == "dense_kd":       # what the pruned students start from
            assert row["params"] == dense
            continue
        t = sizes[row["budget"]]
        assert t - 70 <= row["params"] <= t, (row["method"], row["params"], t)  # one row's size
    with pytest.raises(PakdError, match="below the"):
        size_targets(cfg(["0.001%"]), rd, enc)
    with pytest.raises(PakdError, match="not below the dense"):
        size_targets(cfg([str(dense)]), rd, enc)


def test_retrieval_candidates_by_chunks_equal_those_from_the_cached_scores(run):
    """Hard negatives from a catalogue too large to cache are found chunk by chunk into one
    preallocated tensor: the same items as from the whole score matrix."""
    from pakd.config import build_config, load_run_config
    from pakd.data import load_encoded
    from pakd.scores import retrieval_candidates
    from pakd.rundir import RunDir
    rd = RunDir(run)
    got = {}
    for limit in (10**9, 0):
        cfg = build_config(base=load_run_config(rd.config),
                           overrides={"ensemble.cache_limit": limit, "quiet": True})
        got[limit] = retrieval_candidates(cfg, rd, load_encoded(cfg, rd), "xdeepfm", 7)
    assert got[0].shape == (got[0].shape[0], 7) and got[0].dtype == torch.long
    assert torch.equal(got[0], got[10**9])


def test_distill_with_a_teacher_matrix_over_budget_keeps_each_users_head(run, tmp_path, capsys):
    """A teacher whose users x items matrix is not held (--score-cache-limit 0): signals
    come user chunk by user chunk and the catalogue KD keeps each user's likeliest items;
    the candidate lists, which need the whole matrix, are refused with the way out."""
    import shutil
    rd = tmp_path / "r"
    shutil.copytree(run, rd)
    common = ["distill", "--run", str(rd), "-q", "--score-cache-limit", "0", "--methods",
              "magnitude_kd", "--pruning-ratios", "0.5", "--ablation", "false",
              "--check-units", "0", "--bench-memory", "false", "--distill-workers", "1"]
    assert main([*common, "--kd-list", "candidates"]) == 2
    err = capsys.readouterr().err
    assert "--kd-list candidates needs the teacher's whole" in err and "--kd-list catalogue" in err
    assert main([*common, "--catalogue-head", "8"]) == 0
    out = json.loads((rd / "analysis_results" / "pakd_experiment.json").read_text())
    assert out["teacher_distribution"].startswith("each user's 8 likeliest items")
    row = [r for r in out["rows"] if r["method"] == "magnitude_kd"][0]
    assert 0 < row["ndcg@10"] <= 1 and math.isfinite(row["rmse"])
