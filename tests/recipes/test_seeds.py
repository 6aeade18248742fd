"""Several seeds pooled: `--seeds` runs each seed in RUN/seed-<s> and pools the results."""
import json
import shutil

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
               "fisher_kd,magnitude_kd", "--ablation", "false", "--distill-workers", "1",
               "--kd-unobserved", "0", "--bench-memory", "false", "-q"])
    assert rc == 0
    out = json.loads((root / "seeds.json").read_text())
    assert out["seeds"] == [0, 1] and (root / "seeds.md").read_text().count("|") > 20
    exps = {s: json.loads((root / f"seed-{s}" / "analysis_results" /
                           "pakd_experiment.json").read_text()) for s in (0, 1)}
    # --bench-memory false: speed measured, no memory probe
    assert all("throughput_rows_per_s" in r and "peak_rss_mb" not in r
               for r in exps[0]["rows"])
    rows = {(r["method"], r["pruning_ratio"]): r for r in out["rows"]}
    assert {("teacher", None), ("fisher_kd", 0.5), ("magnitude_kd", 0.5)} <= set(rows)
    mk = rows[("magnitude_kd", 0.5)]
    per = [next(r for r in exps[s]["rows"] if r["method"] == "magnitude_kd") for s in (0, 1)]
    assert mk["mean"]["ndcg@10"] == pytest.approx(np.mean([r["ndcg@10"] for r in per]))
    assert mk["sd"]["rmse"] == pytest.approx(np.std([r["rmse"] for r in per], ddof=1))
    # the pooled difference from fisher_kd is the mean of each seed's paired difference
    each = []
    for s in (0, 1):
        pu = root / f"seed-{s}" / "per_user"
        load = lambda n: dict(np.load(pu / f"{n}.test.npz", allow_pickle=False))  # noqa: E731
        each.append(paired(load("fisher_kd_r50"), load("magnitude_kd_r50"),
                           metrics=["ndcg@10"], resamples=10)["ndcg@10"][0])
    d, lo, hi, p = mk["pooled"]["fisher_kd"]["ndcg@10"]
    assert d == pytest.approx(np.mean(each)) and lo <= d <= hi and 0 <= p <= 1
    assert mk["holm_p"]["ndcg@10"] >= p                     # Holm never lowers a p-value
    assert mk["fisher_kd_is"]["ndcg@10"] in ("better", "worse", "tie")
    assert "fisher_kd" not in rows[("fisher_kd", 0.5)].get("pooled", {})
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
    import math

    from pakd.recipes.seeds import fisher_over_seeds
    from pakd.rundir import RunDir, read_json
    models = read_json(RunDir(pipeline_run).fisher_json)["models"]
    got = fisher_over_seeds({0: RunDir(pipeline_run), 1: RunDir(pipeline_run)})
    checked = 0
    for name, m in models.items():
        v = m["validation"]
        assert got[name]["units"] == 2 * v["groups_tested"] and got[name]["seeds"] == [0, 1]
        without = v["units_without_path"][v["objective"]]
        assert got[name]["units_with_path"] == 2 * (v["groups_tested"] - without)
        for k in ("true", "taylor", "magnitude"):
            rho = v["by_objective"][v["objective"]][f"spearman_{k}"]
            assert got[name][k]["per_seed"] == [rho, rho]
            if rho is not None and math.isfinite(rho):
                assert got[name][k]["mean"] == pytest.approx(rho) and got[name][k]["sd"] == 0
                checked += 1
            else:
                assert "mean" not in got[name][k]
    assert checked > 0
