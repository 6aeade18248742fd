"""A member variant judged where it is used: in the ensemble, on the valid part (issue 10).

Copies a finished run, puts a variant of one member into the copy (trained here with
``pakd train`` flags, or taken from a run that already holds it), refits the ensemble
(``pakd ensemble``, auto weights fitted on valid), and reports the paired differences
(variant minus the run's own, 95% bootstrap interval over users) of the member and of the
ensemble on the valid part, where choices are made. A choice table: valid figures only
(the test part is reported once, by the run that adopts the chosen variant)::

    .venv/bin/python benchmarks/member_in_ensemble.py --run runs/default --member autoint \\
        --flags "--autoint-dnn 400,400" --out benchmarks/results/<dir>
    .venv/bin/python benchmarks/member_in_ensemble.py --run runs/default --member autoint \\
        --from /tmp/mo/runs/autoint_plus --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def pakd(*args: str) -> None:
    cmd = [sys.executable, "-m", "pakd", *args, "-q"]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run (teachers, ensemble)")
    ap.add_argument("--member", required=True, choices=["svd", "xdeepfm", "autoint"])
    ap.add_argument("--flags", default="", help="pakd train flags of the variant")
    ap.add_argument("--from", dest="source", type=Path,
                    help="a run holding the variant already (same split)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from pakd.results import TeachersReport, load_result
    from pakd.rundir import RunDir
    from pakd.stats import paired

    args.out.mkdir(parents=True, exist_ok=True)
    copy = args.out / "run"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(args.run, copy, ignore=shutil.ignore_patterns("models", "benchmarks", "*.state.pt"))
    base, var = RunDir(args.run), RunDir(copy)
    if args.source is not None:
        src = RunDir(args.source)
        if src.split_csv.read_bytes() != base.split_csv.read_bytes():
            raise SystemExit(f"{args.source} has another split than {args.run}")
        for f in (args.source / "teachers").glob(f"{args.member}.*"):
            if not f.name.endswith(".state.pt"):
                shutil.copy2(f, copy / "teachers" / f.name)
        for f in (args.source / "per_user").glob(f"{args.member}.*"):
            shutil.copy2(f, copy / "per_user" / f.name)
        (copy / "teachers" / f"{args.member}.scores.safetensors").unlink(missing_ok=True)
    else:
        pakd("train", "--run", str(copy), "--models", args.member, *shlex.split(args.flags))
    pakd("ensemble", "--run", str(copy))
    out = {"what": f"{args.member} variant ({args.flags or args.source}) in a copy of "
                   f"{args.run}, ensemble refitted; paired differences on the VALID part, "
                   "variant minus the run's own (1,000 resamples over users)",
           "valid_paired": {}, "ensemble_mix": {}}
    for name in (args.member, "ensemble"):
        a, b = base.load_per_user(name, "valid"), var.load_per_user(name, "valid")
        out["valid_paired"][name] = paired(a, b, metrics=("rmse", "ndcg@10"))
    for k, r in (("run", base), ("variant", var)):
        e = load_result(r.teachers_json, TeachersReport).ensemble
        out["ensemble_mix"][k] = {m: e.get(m) for m in ("rating_mix", "ranking_mix")}
    shutil.rmtree(copy)
    (args.out / f"{args.member}_in_ensemble.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
