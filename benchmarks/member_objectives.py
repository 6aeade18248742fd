"""Ranking objectives of the feature members, compared on the valid part (issue 10).

Trains xDeepFM or AutoInt into a copy of a finished run (same split, same SVD member) once
per variant of its ranking objective, then reports for each variant on the valid part:
RMSE, full-catalogue NDCG@10, NDCG@10 as a re-ranker of the SVD member's top-N, and the
paired difference (95% bootstrap interval over valid users) from each variant listed
before it. A choice table: valid figures only (the test part is reported once, by the run
that adopts the chosen variant)::

    .venv/bin/python benchmarks/member_objectives.py --run runs/default --member autoint \\
        --variant "uniform:" \\
        --variant "popularity:--autoint-ranking-loss softmax --autoint-negative-sampling popularity --autoint-negatives 4" \\
        --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def prepare(src: Path, dest: Path) -> None:
    """A run holding ``src``'s split and SVD member only."""
    (dest / "teachers").mkdir(parents=True, exist_ok=True)
    for f in ("split.csv", "split.json", "run.yaml"):
        shutil.copy2(src / f, dest / f)
    for f in (src / "teachers").glob("svd.*"):
        if not f.name.endswith(".state.pt"):
            shutil.copy2(f, dest / "teachers" / f.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run (split + svd)")
    ap.add_argument("--member", required=True, choices=["xdeepfm", "autoint"])
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:FLAGS (pakd train flags); the first is the reference")
    ap.add_argument("--reuse", action="append", default=[],
                    help="NAME:RUN - a variant already trained in RUN (not retrained)")
    ap.add_argument("--rerank-n", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file

    from pakd.config import build_config, load_run_config
    from pakd.evaluate import exclusion_parts, ranking_metrics
    from pakd.recipes.split import load_encoded
    from pakd.rerank import candidates, compose
    from pakd.rundir import RunDir, read_json
    from pakd.stats import paired

    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Path] = {}
    for spec in args.variant:
        name, flags = spec.split(":", 1)
        dest = args.out / "runs" / name
        prepare(args.run, dest)
        cmd = [sys.executable, "-c", "import sys; from pakd.cli import main; sys.exit(main())",
               "train", "--run", str(dest), "--models", args.member, "-q", *shlex.split(flags)]
        print("+", " ".join(cmd[3:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        runs[name] = dest
    for spec in args.reuse:
        name, path = spec.split(":", 1)
        runs[name] = Path(path)

    base = RunDir(args.run)
    cfg = build_config(base=load_run_config(base.config))
    cfg.quiet = True
    enc = load_encoded(cfg, base)
    kw = dict(ks=[10], relevant_min_rating=cfg.eval.relevant_min_rating, chunk=512,
              per_user=True)
    svd = load_file(str(base.member_scores("svd")))["scores"]
    cands = candidates(svd, enc.seen(exclusion_parts("valid")), args.rerank_n)
    users = np.unique(enc.parts["valid"].user.numpy())

    def per_user(scores: torch.Tensor) -> dict:
        m = ranking_metrics(None, enc, "valid", scores=scores, **kw)
        r = m.pop("per_user")
        return {"users": users, "rank_users": r.pop("users"), **r}

    alone = per_user(svd)
    rows, got = {}, {}
    for name, run in runs.items():
        rd = RunDir(run)
        if rd.split_csv.read_bytes() != base.split_csv.read_bytes():
            raise SystemExit(f"{run} has another split than {args.run}")
        s = load_file(str(rd.member_scores(args.member)))["scores"]
        meta = read_json(rd.member(args.member).with_suffix(".json"))
        got[name] = (per_user(s), per_user(compose(svd, s, cands)))
        rows[name] = {"train_config": {k: meta["train_config"][k] for k in (
                          "ranking_loss", "negative_sampling", "negatives", "monitor",
                          "retrieval_share", "retrieval_n") if k in meta["train_config"]},
                      "valid_rmse": meta["valid"]["rmse"],
                      "valid_ndcg@10": float(np.mean(got[name][0]["ndcg@10"])),
                      f"valid_rerank{args.rerank_n}_ndcg@10":
                          float(np.mean(got[name][1]["ndcg@10"])),
                      "rerank_vs_retrieval_alone": paired(alone, got[name][1],
                                                          metrics=("ndcg@10",))["ndcg@10"],
                      "best_epochs": meta["fit"]["best_epochs"],
                      "train_seconds": meta["fit"]["train_seconds"]}
    names = list(runs)
    for k, name in enumerate(names):       # each variant against every one listed before it
        for ref in names[:k]:
            rows[name]["vs_" + ref] = {
                "valid_ndcg@10": paired(got[ref][0], got[name][0], metrics=("ndcg@10",))["ndcg@10"],
                f"valid_rerank{args.rerank_n}": paired(got[ref][1], got[name][1],
                                                       metrics=("ndcg@10",))["ndcg@10"]}
    summary = {"member": args.member, "run": str(args.run), "svd_alone_valid_ndcg@10":
               float(np.mean(alone["ndcg@10"])), "variants": rows}
    (args.out / f"{args.member}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
