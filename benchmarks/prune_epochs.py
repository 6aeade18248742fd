"""How long the pruned students train: `--prune-epochs` (pruning over the first
`--prune-until` share of them, then fine-tuning; the best epoch on valid is kept). For each
seed of a finished `pakd run --seeds` folder, its split, teachers and trained dense student
are copied into a work folder per setting, and `pakd distill --methods fisher_kd` trains
the students of the given budgets from that dense student. The choice is made on the valid
part (valid NDCG@10, valid RMSE, and the score the distillation loop keeps its best epoch
by, `pakd.distill.objective.retention_balance`); test figures are reported only.

    python benchmarks/prune_epochs.py --runs runs/mix --seeds 0,1,2 --work runs/prune_epochs \
        --settings "8:0.3,16:0.3,16:0.15" --out <folder>/random.json
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pakd.atomic import atomic_write_text
from pakd.distill.objective import retention_balance

COPIED = ("run.yaml", "split.csv", "split.json", "teachers.json", "teachers.md")


def prepare(src: Path, dst: Path) -> None:
    """The seed's run as `pakd distill` needs it: teachers linked, the rest copied."""
    (dst / "teachers").mkdir(parents=True, exist_ok=True)
    (dst / "models" / "students").mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(src / name, dst / name)
    for name in ("per_user", "analysis_results"):
        if not (dst / name).exists():
            shutil.copytree(src / name, dst / name)
    for f in (src / "teachers").iterdir():
        link = dst / "teachers" / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    for f in (src / "models" / "students").glob("dense_kd_dense.*"):
        shutil.copy2(f, dst / "models" / "students" / f.name)


def teacher_valid(run: Path) -> dict:
    """The teacher's valid NDCG@10 and RMSE, as the run's distillation saw them."""
    j = json.loads((run / "analysis_results" / "pakd_experiment.json").read_text())
    tv = j["teacher_valid"]
    return {"ndcg@10": tv["ndcg@10"], "rmse": tv["rmse"]}


def rows(run: Path, tv: dict) -> dict:
    out = {}
    for f in sorted((run / "models" / "students").glob("fisher_kd_*.row.json")):
        r = json.loads(f.read_text())["row"]
        v = r["valid"]
        out[r["budget"]] = {
            "params": r["params"], "valid_ndcg@10": v["ndcg@10"], "valid_rmse": v["rmse"],
            "valid_score": retention_balance(v["ndcg@10"], v["rmse"], tv),
            "test_ndcg@10": r["ndcg@10"], "test_rmse": r["rmse"],
            "epochs_run": r["epochs_run"], "best_epoch": r["best_epoch"],
            "train_seconds": r["train_seconds"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a finished pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="1%,3%,5%")
    ap.add_argument("--settings", default="8:0.3,16:0.3,16:0.15",
                    help="prune_epochs:prune_until[:prune_steps] settings")
    ap.add_argument("--work", required=True, help="folder for the copies (git-ignored runs/)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    result = {}
    for setting in a.settings.split(","):
        epochs, until, *steps = setting.split(":")
        folder = Path(a.work) / "_".join([f"e{epochs}", f"u{until}"] + [f"s{n}" for n in steps])
        per_seed = {}
        for s in seeds:
            src = Path(a.runs) / f"seed-{s}"
            run = folder / f"seed-{s}"
            prepare(src, run)
            subprocess.run([sys.executable, "-m", "pakd", "distill", "--run", str(run),
                            "--methods", "fisher_kd", "--budgets", a.budgets,
                            "--dense-from", str(src / "models/students/dense_kd_dense"),
                            "--check-units", "0", "--prune-epochs", epochs,
                            "--prune-until", until, "--quiet"]
                           + [x for n in steps for x in ("--prune-steps", n)], check=True)
            per_seed[s] = rows(run, teacher_valid(src))
            print(setting, s, json.dumps(per_seed[s]), flush=True)
        result[setting] = per_seed
    base = a.settings.split(",")[0]
    summary = {}
    for setting, per_seed in result.items():
        for b in per_seed[seeds[0]]:
            keys = ("valid_ndcg@10", "valid_rmse", "valid_score", "test_ndcg@10", "test_rmse")
            mean = {k: float(np.mean([per_seed[s][b][k] for s in seeds])) for k in keys}
            diff = {k: [per_seed[s][b][k] - result[base][s][b][k] for s in seeds]
                    for k in keys[:3]}
            summary[f"{setting} {b}"] = {"mean": mean, f"minus {base} per seed": diff}
    out = {"runs": a.runs, "seeds": seeds, "budgets": a.budgets, "summary": summary,
           "per_seed": result}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for k, v in summary.items():
        print(k, json.dumps(v["mean"]))


if __name__ == "__main__":
    main()
