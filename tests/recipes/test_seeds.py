"""Several seeds pooled: `--seeds` runs each seed in RUN/seed-<s> and pools the results."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pakd.cli import main
from pakd.stats import paired


def _as_seed(run, dest, seed):
    """A copy of the shared quick run that says it was made with ``seed`` (the split stays
    the copied one: enough to test the plumbing and the pooling, not the seeds' spread)."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("analysis_results", "students"))
    cfg = yaml.safe_load((dest / "run.yaml").read_text())
    cfg["seed"] = seed
    (dest / "run.yaml").write_text(yaml.safe_dump(cfg))


def test_distill_over_seeds_pools_every_row(pipeline_run, tmp_path, capsys):
    root = tmp_path / "seeds"
    for s in (0, 1):
        _as_seed(pipeline_run, root / f"seed-{s}", s)
    rc = main(["distill", "--run", str(root), "--seeds", "0,1", "--methods",
               "fisher_kd,magnitude_kd", "--ablation", "none", "--distill-workers", "1",
               "--kd-unobserved", "0", "--bench-memory", "false", "-q"])
    assert rc == 0
    out = json.loads((root / "seeds.json").read_text())
    assert out["seeds"] == [0, 1] and (root / "seeds.md").read_text().count("|") > 20
    exps = {s: json.loads((root / f"seed-{s}" / "analysis_results" /
                           "pakd_experiment.json").read_text()) for s in (0, 1)}
    # --bench-memory false: speed measured, no memory probe
    assert all("throughput_rows_per_s" in r and "peak_rss_mb" not in r
               for r in exps[0]["rows"])
    rows = {(r["method"], r["budget"]): r for r in out["rows"]}
    assert {("teacher", None), ("fisher_kd", "0.5"), ("magnitude_kd", "0.5")} <= set(rows)
    mk = rows[("magnitude_kd", "0.5")]
    per = [next(r for r in exps[s]["rows"] if r["method"] == "magnitude_kd") for s in (0, 1)]
    assert mk["mean"]["ndcg@10"] == pytest.approx(np.mean([r["ndcg@10"] for r in per]))
    assert mk["sd"]["rmse"] == pytest.approx(np.std([r["rmse"] for r in per], ddof=1))
    # the pooled difference from fisher_kd is the mean of each seed's paired difference
    each = []
    for s in (0, 1):
        pu = root / f"seed-{s}" / "per_user"
        load = lambda n: dict(np.load(pu / f"{n}.test.npz", allow_pickle=False))  # noqa: E731
        each.append(paired(load("fisher_kd_r0_5"), load("magnitude_kd_r0_5"),
                           metrics=["ndcg@10"], resamples=10)["ndcg@10"][0])
    d, lo, hi, p, t_lo, t_hi = mk["pooled"]["fisher_kd"]["ndcg@10"]
    assert d == pytest.approx(np.mean(each)) and lo <= d <= hi and 0 <= p <= 1
    assert t_lo <= d <= t_hi and out["pooled_fields"][4:] == ["t_low", "t_high"]
    assert mk["holm_p"]["ndcg@10"] >= p                     # Holm never lowers a p-value
    assert mk["fisher_kd_is"]["ndcg@10"] in ("better", "worse", "tie")
    assert "fisher_kd" not in rows[("fisher_kd", "0.5")].get("pooled", {})
    assert "teacher" in rows[("member:svd", None)]["pooled"]


def test_seeds_flag_refuses_bad_lists_and_a_second_seed(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--run", str(tmp_path / "r"), "--seeds", "0,0"])
    assert "distinct" in capsys.readouterr().err
    assert main(["distill", "--run", str(tmp_path / "r"), "--seeds", "0,1", "--seed", "3"]) == 2
    assert "either --seed or --seeds" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_pooling_names_the_seed_that_has_not_finished(tmp_path):
    from pakd.errors import PakdError
    from pakd.recipes.seeds import pool
    with pytest.raises(PakdError, match="seed-4"):
        pool(tmp_path, [4])


def test_fisher_checks_are_summarised_over_seeds(pipeline_run):
    """Headline Spearman from the test part, the valid part's as in-sample, and the paired
    difference from magnitude per seed with a t interval over seeds."""
    import math

    from pakd.pool import fisher_over_seeds
    from pakd.results import FisherAnalysis, load_result
    from pakd.rundir import RunDir
    report = load_result(RunDir(pipeline_run).fisher_json, FisherAnalysis)
    models = report.models
    got = fisher_over_seeds({0: report, 1: report})
    checked = 0
    for name, m in models.items():
        v = m["validation"]
        assert got[name]["units"] == 2 * v["groups_tested"] and got[name]["seeds"] == [0, 1]
        assert got[name]["parts"] == ["test", "test"]
        without = v["units_without_path"][v["objective"]]
        assert got[name]["units_with_path"] == 2 * (v["groups_tested"] - without)
        test = v["test_part"]["by_objective"][v["objective"]]
        valid = v["by_objective"][v["objective"]]
        for k in ("true", "taylor", "magnitude"):
            rho = test[f"spearman_{k}"]
            assert got[name][k]["per_seed"] == [rho, rho]
            assert got[name]["in_sample"][k]["per_seed"] == [valid[f"spearman_{k}"]] * 2
            if rho is not None and math.isfinite(rho):
                assert got[name][k]["mean"] == pytest.approx(rho) and got[name][k]["sd"] == 0
                checked += 1
            else:
                assert "mean" not in got[name][k]
        b = test["beats"].get("taylor_vs_magnitude")
        if b:
            tm = got[name]["beats"]["taylor_vs_magnitude"]
            assert tm["mean"] == pytest.approx(b[0])
            assert tm["t95"] == pytest.approx([b[0], b[0]])     # two equal seeds: no spread
    assert checked > 0


def test_five_seeds_pool_with_t_intervals_and_p_resolution(pipeline_run, tmp_path):
    """Five seeds pooled (copies of the shared run, magnitude_kd's per-user NDCG shifted by
    a different amount on each): the t interval is the hand one over the five per-seed
    differences, and no p-value prints as 0.000."""
    from pakd.recipes.seeds import pool
    from pakd.stats import t_interval
    shifts = [0.03, 0.01, 0.05, 0.02, 0.04]
    root = tmp_path / "five"
    exp = json.loads((pipeline_run / "analysis_results" / "pakd_experiment.json").read_text())
    mk = next(r for r in exp["rows"] if r["method"] == "magnitude_kd")
    fk = next(r for r in exp["rows"] if r["method"] == "fisher_kd"
              and r["budget"] == mk["budget"])
    stem = {r["method"]: Path(r["file"]).name for r in (mk, fk)}
    for s, by in enumerate(shifts):
        d = root / f"seed-{s}"
        shutil.copytree(pipeline_run / "analysis_results", d / "analysis_results")
        shutil.copytree(pipeline_run / "per_user", d / "per_user")
        f = d / "per_user" / f"{stem['magnitude_kd']}.test.npz"
        arrays = dict(np.load(f, allow_pickle=False))
        arrays["ndcg@10"] = arrays["ndcg@10"] + by
        np.savez(f, **arrays)
    out = pool(root, list(range(5)), resamples=200)
    row = next(e for e in out["rows"] if e["method"] == "magnitude_kd")
    pu = pipeline_run / "per_user"
    base = {n: dict(np.load(pu / f"{stem[n]}.test.npz", allow_pickle=False))["ndcg@10"].mean()
            for n in stem}
    each = [base["magnitude_kd"] + by - base["fisher_kd"] for by in shifts]
    d, lo, hi, p, t_lo, t_hi = row["pooled"]["fisher_kd"]["ndcg@10"]
    assert d == pytest.approx(np.mean(each))
    assert [t_lo, t_hi] == pytest.approx(t_interval(each)[1:])
    assert t_hi - t_lo > 0.02                       # the seeds' spread, not the users'
    text = (root / "seeds.md").read_text()
    assert "over 5 seeds" in text and "0.000)" not in text and "t " in text
    assert "NDCG@10 ≥ 4" in text and row["mean"].get("ndcg@10_rel4") is not None
