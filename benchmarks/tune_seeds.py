"""Issue 33's target measurement: one `pakd tune` study per seed under the same cap, each
followed by `pakd tune --final`, and the tuned students pooled over the seeds against the
default-settings students at the same budgets (test part, paired: two-stage bootstrap and
a t interval over the seed means, `pakd.stats.pooled_paired`). `--final`'s
default-settings student starts where the run's own students start (its trained dense
student, as `pakd run` leaves it), at the tuned student's budget; the tuned student is also
compared with the run's saved student of that name (``--pipeline-student``: the
pipeline's fisher_kd at 3%, which keeps at least the tuned student's parameters).

Each seed's run directory must hold a finished run (its teachers); studies and finals
already done are kept, so a killed measurement resumes where it stopped.

    .venv/bin/python benchmarks/tune_seeds.py --runs runs/tune3/seed-0,runs/tune3/seed-1 \
        --max-params 61723 --timeout 1800 --out benchmarks/results/<folder>
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from pakd.atomic import atomic_write_text
from pakd.rundir import RunDir
from pakd.runtime import environment
from pakd.stats import POOLED_FIELDS, p_text, pooled_paired

METRICS = ("ndcg@10", "rmse")


def _pakd(*args: str) -> float:
    """Run one pakd command with this interpreter's pakd; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pakd", *args], check=True)
    return time.perf_counter() - start


def _seed(run: str, a) -> dict:
    """Study and final for one run directory (each skipped when already done)."""
    rd = RunDir(run)
    took = {}
    if not rd.tune_front_json.exists():
        took["study_s"] = _pakd("tune", "--run", run, "--max-params", str(a.max_params),
                                "--timeout", str(a.timeout), "-q")
    if not rd.tune_final_json.exists():
        took["final_s"] = _pakd("tune", "--run", run, "--final", "-q")
    fin = json.loads(rd.tune_final_json.read_text())
    front = json.loads(rd.tune_front_json.read_text())
    return {"run": run, **took, "final": fin, "front": front}


def _pooled_rows(pooled: dict, resamples: int) -> list[str]:
    lines = ["| metric | difference | two-stage bootstrap 95% | p | t interval 95% |",
             "|---|---:|---|---|---|"]
    for m in METRICS:
        d, lo, hi, p, tlo, thi = pooled[m]
        lines.append(f"| {m} | {d:+.4f} | {lo:+.4f} to {hi:+.4f} | {p_text(p, resamples)} "
                     f"| {tlo:+.4f} to {thi:+.4f} |")
    return lines


def _table(rows: list[dict], pooled: dict, resamples: int, pipeline: dict | None,
           name: str) -> str:
    lines = ["| run | budget | tuned NDCG@10 | default NDCG@10 | tuned RMSE | default RMSE |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = r["final"]
        lines.append(f"| {r['run']} | {f['budget']:,} | {f['tuned']['test']['ndcg@10']:.4f} "
                     f"| {f['default']['test']['ndcg@10']:.4f} "
                     f"| {f['tuned']['test']['rmse']:.4f} | {f['default']['test']['rmse']:.4f} |")
    lines += ["", "Tuned minus `--final`'s default-settings student (fisher_kd at the same "
              "budget, pruned from the run's dense student when the run prunes from one, "
              "else from a fresh start), pooled over the seeds (test part):", ""]
    lines += _pooled_rows(pooled, resamples)
    if pipeline is not None:
        lines += ["", f"Tuned minus the run's own `{name}` (the pipeline's student at its own "
                  "budget), pooled over the seeds (test part):", ""]
        lines += _pooled_rows(pipeline, resamples)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="run directories, comma-separated")
    p.add_argument("--max-params", type=int, required=True)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--pipeline-student", default="fisher_kd_3pct",
                   help="the run's saved student to compare with as well ('' for none)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    rows = [_seed(run, a) for run in a.runs.split(",")]
    pairs = [(RunDir(r["run"]).load_per_user("default_student", "test"),
              RunDir(r["run"]).load_per_user("tuned_student", "test")) for r in rows]
    pooled = pooled_paired(pairs, resamples=a.resamples, metrics=METRICS)
    pipeline = None
    runs = [RunDir(r["run"]) for r in rows]
    if a.pipeline_student and all(
            rd.per_user(a.pipeline_student, "test").is_file() for rd in runs):
        pipeline = pooled_paired([(rd.load_per_user(a.pipeline_student, "test"),
                                   rd.load_per_user("tuned_student", "test")) for rd in runs],
                                 resamples=a.resamples, metrics=METRICS)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"max_params": a.max_params, "timeout_s": a.timeout, "resamples": a.resamples,
           "pooled_fields": list(POOLED_FIELDS), "pooled": pooled,
           "pipeline_student": a.pipeline_student or None, "pooled_vs_pipeline": pipeline,
           "seeds": rows,
           "environment": environment()}
    atomic_write_text(out / "tune_seeds.json", json.dumps(res, indent=1) + "\n")
    text = _table(rows, pooled, a.resamples, pipeline, a.pipeline_student)
    atomic_write_text(out / "tune_seeds.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
