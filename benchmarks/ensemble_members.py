"""Which members the ensemble teacher needs, judged on the valid part.

Copies a finished run, refits the ensemble there with another member set (``pakd ensemble
--algorithms ...``, auto weights fitted on valid), and prints the paired differences of the
ensemble's valid NDCG@10 and RMSE (the other set minus the run's own, 95% bootstrap interval
over valid users) beside each set's fitted mixes. A choice table: valid figures only::

    .venv/bin/python benchmarks/ensemble_members.py --run runs/default \\
        --algorithms svd,autoint,ease --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def valid_per_user(root: Path):
    """(the refitted ensemble's valid metrics with per-user arrays, its mixes)."""
    import yaml

    from pakd.config import build_config
    from pakd.data import load_encoded
    from pakd.evaluate import evaluate
    from pakd.results import TeachersReport, load_result
    from pakd.rundir import RunDir
    from pakd.scores import ensemble_scores, member_scores
    rd = RunDir(root)
    cfg = build_config(base=yaml.safe_load(rd.config.read_text()))
    enc = load_encoded(cfg, rd)
    ens = rd.load_ensemble()
    scores = ensemble_scores(ens, {n: member_scores(cfg, rd, n, m, enc)
                                   for n, m in ens.members.items()})
    got = evaluate(ens, enc, "valid", **cfg.eval.kwargs(), scores=scores, per_user=True)
    mixes = load_result(rd.teachers_json, TeachersReport).ensemble
    return got, {k: mixes[k] for k in ("rating_mix", "ranking_mix")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run (teachers, ensemble)")
    ap.add_argument("--algorithms", required=True, help="the other member set")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from pakd.stats import paired
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "run"
        shutil.copytree(args.run, other)
        subprocess.run([sys.executable, "-m", "pakd", "ensemble", "--run", str(other),
                        "--algorithms", args.algorithms, "-q"], check=True)
        base, base_mix = valid_per_user(args.run)
        alt, alt_mix = valid_per_user(other)
    diff = paired(base["per_user"], alt["per_user"], metrics=["ndcg@10", "rmse"],
                  resamples=1000)
    out = {"run": str(args.run), "algorithms": args.algorithms, "part": "valid",
           "own": {"ndcg@10": base["ndcg@10"], "rmse": base["rmse"], **base_mix},
           "other": {"ndcg@10": alt["ndcg@10"], "rmse": alt["rmse"], **alt_mix},
           "other_minus_own": diff}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ensemble_members.json").write_text(json.dumps(out, indent=2) + "\n")
    d = diff
    print(f"valid, {args.algorithms} minus the run's own ensemble: NDCG@10 {d['ndcg@10'][0]:+.4f} "
          f"({d['ndcg@10'][1]:+.4f} to {d['ndcg@10'][2]:+.4f}), RMSE {d['rmse'][0]:+.4f} "
          f"({d['rmse'][1]:+.4f} to {d['rmse'][2]:+.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
