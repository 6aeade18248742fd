"""How far a student of the tower's form can follow the teacher's ranking, whatever it is
trained with: the best rank-k linear map from a user's normalised train history to the
teacher's (temperature-free, per-user centred) ranking scores - a reduced-rank regression,
the closed-form optimum of every model that scores ``x_u P Q^T`` with k dimensions, as the
tower student's ranking side does - and, for comparison, the teacher's EASE member cut to
its largest item-item weights (a sparse student of the same parameter count).

Valid NDCG@10 is the figure; test is reported beside it. Nothing is trained.

    python benchmarks/student_ceiling.py --runs runs/mix --seeds 0,1,2 \
        --out benchmarks/results/2026-12-07_student_ceiling/ceiling.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.data import load_encoded
from pakd.evaluate import ranking_metrics
from pakd.rundir import RunDir
from pakd.scores import teacher_scores

RANKS = [16, 32, 64, 128, 256]
RIDGE = 1e-2          # on the Gram matrix of histories scaled to sum one per user


def ndcg(enc, scores: torch.Tensor, part: str) -> float:
    return ranking_metrics(None, enc, part, ks=[10], relevant_min_rating=None, chunk=1024,
                           scores=scores.float())["ndcg@10"]


def both(enc, scores: torch.Tensor) -> dict:
    return {"valid": ndcg(enc, scores, "valid"), "test": ndcg(enc, scores, "test")}


def one_seed(run: Path, nnz: list[int]) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")))
    enc = load_encoded(cfg, rd)
    _, S = teacher_scores(cfg, rd, enc)
    out = {"teacher": both(enc, S)}
    X = torch.from_numpy(enc.seen(("train",)).toarray()).double()
    Xn = X / X.sum(1, keepdim=True).clamp(min=1)
    T = S.double() - S.double().mean(1, keepdim=True)     # a user's softmax ignores shifts
    G = Xn.T @ Xn + RIDGE * torch.eye(X.shape[1], dtype=torch.float64)
    P = Xn @ torch.linalg.solve(G, Xn.T @ T)
    del G
    out["linear_full_rank"] = both(enc, P)
    U, s, Vh = torch.linalg.svd(P, full_matrices=False)
    for k in RANKS:
        out[f"linear_rank_{k}"] = both(enc, (U[:, :k] * s[:k]) @ Vh[:k])
        print(run.name, k, out[f"linear_rank_{k}"], flush=True)
    del U, s, Vh, P
    B = load_file(str(rd.weights(rd.member("ease"))))["weight"].float()
    B.fill_diagonal_(0)
    size = B.abs().flatten()
    out["ease"] = both(enc, X.float() @ B)
    for n in nnz:
        cut = torch.topk(size, n).values[-1]
        out[f"ease_top_{n}"] = both(enc, X.float() @ torch.where(B.abs() >= cut, B, 0.0))
        print(run.name, n, out[f"ease_top_{n}"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--nnz", default="20600,61700,102900,205700",
                    help="EASE weights kept (the sweep's 1/3/5/10%% budgets)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in a.seeds.split(",")]
    nnz = [int(n) for n in a.nnz.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}", nnz) for s in seeds}
    keys = list(per_seed[seeds[0]])
    mean = {k: {p: float(np.mean([per_seed[s][k][p] for s in seeds])) for p in ("valid", "test")}
            for k in keys}
    share = {k: {p: 100 * mean[k][p] / mean["teacher"][p] for p in ("valid", "test")}
             for k in keys}
    out = {"runs": a.runs, "seeds": seeds, "ridge": RIDGE, "mean": mean,
           "percent_of_teacher": share, "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for k in keys:
        print(f"{k:20s} valid {mean[k]['valid']:.4f} ({share[k]['valid']:.1f}%)  "
              f"test {mean[k]['test']:.4f} ({share[k]['test']:.1f}%)")


if __name__ == "__main__":
    main()
