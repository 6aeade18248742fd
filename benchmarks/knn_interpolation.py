"""Would a neighbourhood with learned interpolation weights lower the ensemble's RMSE?
Measured on finished runs, beside the run's own knn member.

knn predicts b_ui + sum_j s_ij r_uj / sum_j s_ij: a similarity-weighted mean of the user's
residuals r_uj on the k items most similar to i. Bell & Koren (ICDM 2007, "Scalable
collaborative filtering with jointly derived neighborhood interpolation weights") solve
the weights instead, per prediction, from how the neighbours' residuals co-vary over all
users: (A + lam I) w = b over the same k neighbours, A_jl the mean product of residuals of
items j and l over the users who rated both, b_j that of items i and j, each mean shrunk
towards the mean over all item pairs with ``beta`` pseudo-users (the diagonal towards the
mean of the diagonal). Neighbours that repeat each other share their weight instead of
each counting in full. The residuals and neighbours are the run's knn member's.

The interpolated predictor enters the run's rating mix (non-negative least squares with
an offset) beside knn ("add") or in its place ("replace"). As in `rating_stack.py` the
choice is made on the valid part only: the valid ratings' two seeded halves, each mix
fitted on one and scored on the other ("cv"); (k, beta) is chosen by the mean cv over the
seeds. The mix fitted on every valid rating is scored on the test part, which only reports.

    python benchmarks/knn_interpolation.py --runs runs/base --seeds 0,1,2 \\
        --out benchmarks/results/2026-12-07_knn_interpolation/random.json
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import yaml

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.csr import csr_entries
from pakd.data import load_encoded
from pakd.evaluate import predict_ratings
from pakd.rundir import RunDir
from rating_stack import Fold, fit_nnls, nnls_offset

MEMBERS = ("svd", "autoint", "knn")
GRID = [(k, beta) for k in (5, 10, 20, 40) for beta in (10.0, 30.0, 100.0, 300.0)]


class Interpolation:
    """The shrunk co-residual means of every item pair, from the knn member's train
    residuals: what the per-prediction systems are cut from."""

    def __init__(self, knn):
        n_u, n_i = knn.schema.n_users, knn.schema.n_items
        self.knn = knn
        self.items = knn.hist_items.numpy()
        self.resid = knn.hist_residual.double().numpy()
        R = sp.csr_matrix((self.resid, self.items, knn.hist_indptr.numpy()), shape=(n_u, n_i))
        M = R.copy()
        M.data[:] = 1.0
        self.prod = (R.T @ R).toarray()
        self.count = (M.T @ M).toarray()
        d, c = np.diag(self.prod), np.diag(self.count)
        self.off_mean = float((self.prod.sum() - d.sum()) / (self.count.sum() - c.sum()))
        self.diag_mean = float(d.sum() / c.sum())

    def predict(self, user: torch.Tensor, item: torch.Tensor, k: int, beta: float,
                lam: float = 0.0) -> np.ndarray:
        knn = self.knn
        pair, entry = csr_entries(knn.hist_indptr, user)
        sims = knn.similarity[item[pair], knn.hist_items[entry]].numpy()
        pair, entry = pair.numpy(), entry.numpy()
        out = (knn.rating_mean + knn.user_bias[user] + knn.item_bias[item]).double().numpy()
        starts = np.searchsorted(pair, np.arange(len(user)))
        ends = np.searchsorted(pair, np.arange(len(user)), side="right")
        for p in range(len(user)):
            a, b = starts[p], ends[p]
            if a == b:
                continue
            near = entry[a:b][np.argsort(-sims[a:b], kind="stable")[:k]]
            j, i = self.items[near], int(item[p])
            A = (self.prod[np.ix_(j, j)] + beta * self.off_mean) / (
                self.count[np.ix_(j, j)] + beta)
            np.fill_diagonal(A, (self.prod[j, j] + beta * self.diag_mean) /
                             (self.count[j, j] + beta))
            rhs = (self.prod[j, i] + beta * self.off_mean) / (self.count[j, i] + beta)
            out[p] += np.linalg.solve(A + lam * np.eye(len(j)), rhs) @ self.resid[near]
        return out


def one_seed(run: Path) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")))
    enc = load_encoded(cfg, rd)
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    models = {n: rd.load_member(n)[0] for n in MEMBERS}
    parts = ("valid", "test")
    pred = {p: {n: predict_ratings(m, enc.parts[p].user, enc.parts[p].item).double().numpy()
                for n, m in models.items()} for p in parts}
    y = {p: enc.parts[p].rating.double().numpy() for p in parts}
    fold = Fold(y, cfg.seed, scale)
    out = {"default": fold.score(nnls_offset({p: [pred[p][n] for n in MEMBERS]
                                              for p in parts}), fit_nnls),
           "knn_valid_rmse": fold.rmse(pred["valid"]["knn"], y["valid"]), "grid": {}}
    t0 = time.perf_counter()
    inter = Interpolation(models["knn"])
    out["build_seconds"] = time.perf_counter() - t0
    for k, beta in GRID:
        t0 = time.perf_counter()
        q = {p: inter.predict(enc.parts[p].user, enc.parts[p].item, k, beta) for p in parts}
        spent = time.perf_counter() - t0
        out["grid"][f"k={k},beta={beta:g}"] = {
            "k": k, "beta": beta, "valid_rmse_alone": fold.rmse(q["valid"], y["valid"]),
            "predict_seconds": spent,
            "add": fold.score(nnls_offset({p: [pred[p][n] for n in MEMBERS] + [q[p]]
                                           for p in parts}), fit_nnls),
            "replace": fold.score(nnls_offset({p: [pred[p]["svd"], pred[p]["autoint"], q[p]]
                                               for p in parts}), fit_nnls)}
        print(run.name, k, beta, json.dumps({w: out["grid"][f"k={k},beta={beta:g}"][w]
                                             ["cv_valid_rmse"] for w in ("add", "replace")}),
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}") for s in seeds}
    mean = lambda f: float(np.mean([f(per_seed[s]) for s in seeds]))    # noqa: E731
    summary = {"default": {f: mean(lambda r: r["default"][f])
                           for f in ("cv_valid_rmse", "test_rmse")}}
    for way in ("add", "replace"):
        cv = {g: mean(lambda r: r["grid"][g][way]["cv_valid_rmse"]) for g in per_seed[seeds[0]]
              ["grid"]}
        best = min(cv, key=cv.get)
        diff = [per_seed[s]["grid"][best][way]["cv_valid_rmse"] -
                per_seed[s]["default"]["cv_valid_rmse"] for s in seeds]
        summary[way] = {"chosen": best, "cv_valid_rmse": cv[best],
                        "test_rmse": mean(lambda r: r["grid"][best][way]["test_rmse"]),
                        "cv_minus_default": diff,
                        "lower_on_valid_in": f"{sum(d < 0 for d in diff)} of {len(seeds)}",
                        "cv_by_setting": cv}
    out = {"runs": a.runs, "seeds": seeds, "members": list(MEMBERS), "grid": GRID,
           "summary": summary, "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for way, v in summary.items():
        print(f"{way:10s} {v.get('chosen', ''):18s} cv valid {v['cv_valid_rmse']:.4f}  "
              f"test {v['test_rmse']:.4f}  {v.get('lower_on_valid_in', '')}")


if __name__ == "__main__":
    main()
