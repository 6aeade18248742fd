"""Would a better-regularised EASE make a stronger member? EDLAE (Steck 2020, "Autoencoders
that don't overfit towards the identity") is EASE whose ridge is larger for popular items:
Lambda = lam + p / (1 - p) * diag(X'X), the penalty that dropout with probability p puts on
the input. p = 0 is EASE. For each run, valid NDCG@10 (the choice) and test NDCG@10 (report
only) on a grid of (lam, p); the zero-diagonal closed form as in `pakd.models.ease`.

    python benchmarks/ease_dropout.py --runs runs/mix --seeds 0,1,2,3,4 \
        --out benchmarks/results/2026-12-07_member_sets/ease_dropout.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.data import load_encoded
from pakd.evaluate import ranking_metrics
from pakd.rundir import RunDir

LAMS = [20.0, 50.0, 100.0, 200.0]
DROPOUTS = [0.0, 0.1, 0.25, 0.5]


def edlae_scores(X: torch.Tensor, lam: float, p: float) -> torch.Tensor:
    """Scores X B for the binary train matrix X [users, items] (users < items: the inverse
    of X'X + D, D diagonal, by Woodbury through the users x users system)."""
    d = lam + p / (1 - p) * X.sum(0)
    Xs = X / d
    inner = Xs @ X.T
    inner.diagonal().add_(1.0)
    P = -(Xs.T @ torch.linalg.solve(inner, Xs))
    P.diagonal().add_(1.0 / d)
    B = -P / P.diagonal()
    B.diagonal().zero_()
    return (X @ B).float()


def one_seed(run: Path) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")),
                       overrides={"quiet": True})
    enc = load_encoded(cfg, rd)
    X = torch.from_numpy((enc.seen(("train",)) > 0).toarray()).double()
    out = {}
    for p in DROPOUTS:
        for lam in LAMS:
            s = edlae_scores(X, lam, p)
            out[f"{lam:g}/{p:g}"] = {
                part: ranking_metrics(None, enc, part, ks=[10], relevant_min_rating=None,
                                      chunk=1024, scores=s)["ndcg@10"]
                for part in ("valid", "test")}
            print(run.name, lam, p, out[f"{lam:g}/{p:g}"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in a.seeds.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}") for s in seeds}
    best = {}
    for s, grid in per_seed.items():
        ease = max((k for k in grid if k.endswith("/0")), key=lambda k: grid[k]["valid"])
        any_p = max(grid, key=lambda k: grid[k]["valid"])
        best[s] = {"ease": ease, "edlae": any_p, "ease_valid": grid[ease]["valid"],
                   "edlae_valid": grid[any_p]["valid"], "ease_test": grid[ease]["test"],
                   "edlae_test": grid[any_p]["test"]}
    mean = {k: float(np.mean([b[k] for b in best.values()]))
            for k in ("ease_valid", "edlae_valid", "ease_test", "edlae_test")}
    out = {"runs": a.runs, "seeds": seeds, "lams": LAMS, "dropouts": DROPOUTS,
           "chosen_on_valid": best, "mean": mean, "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for s, b in best.items():
        print(s, json.dumps(b))
    print("mean", json.dumps(mean))


if __name__ == "__main__":
    main()
