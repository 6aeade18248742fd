"""What else could lower the ensemble's rating RMSE, measured on finished runs: the run's
rating mix (non-negative least squares with an offset over its rating members, the
default) against (a) one more rating column - the user neighbourhood (`pakd train --models
uknn`, fitted in a scratch copy of the run) or Surprise's SVD++ (library defaults, fitted
on the train part) - and (b) feature-weighted linear stacking (Sill et al. 2009): each
member's weight a linear function of a few meta-features of the pair (log train counts of
the user and of the item, log of knn's neighbour support), fitted by ridge regression.

As in `rating_members.py`, the choice is made on the valid part only: the valid ratings
are split in two seeded halves, each mix fitted on one half and scored on the other (RMSE
of both folds pooled, "cv"); the ridge strength is chosen by that figure. The mix fitted
on every valid rating is then scored on the test part, which only reports.

    python benchmarks/rating_stack.py --runs runs/base --seeds 0,1,2 \\
        --out benchmarks/results/2026-12-07_rating_stack/random.json
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.optimize import nnls

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.data import load_encoded
from pakd.evaluate import predict_ratings
from pakd.metrics import rmse
from pakd.rundir import RunDir, read_json
from rating_members import fitted_knn

MEMBERS = ("svd", "autoint", "knn")
FEATURE_SETS = (("users", "items"), ("users", "items", "support"))
RIDGES = (0.0, 1e-3, 1e-2, 1e-1)
CHUNK = 4096


def in_chunks(fn, d) -> np.ndarray:
    return torch.cat([fn(d.user[a:a + CHUNK], d.item[a:a + CHUNK]).double()
                      for a in range(0, len(d.user), CHUNK)]).numpy()


def svdpp_column(enc, seed: int) -> tuple[dict, float]:
    """Surprise SVD++ (library defaults) on the train part: its predictions of valid and
    test, and the fit's seconds."""
    import pandas as pd
    import surprise
    tr = enc.parts["train"]
    frame = pd.DataFrame({"u": tr.user.numpy(), "i": tr.item.numpy(), "r": tr.rating.numpy()})
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    data = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=scale))
    t0 = time.perf_counter()
    algo = surprise.SVDpp(random_state=seed).fit(data.build_full_trainset())
    spent = time.perf_counter() - t0
    return {p: np.array([algo.predict(int(u), int(i), clip=False).est for u, i in
                         zip(enc.parts[p].user.tolist(), enc.parts[p].item.tolist())])
            for p in ("valid", "test")}, spent


class Fold:
    """The valid ratings' two seeded halves and the figures of a mix fitted on them."""

    def __init__(self, y: dict, seed: int, scale):
        order = torch.randperm(len(y["valid"]), generator=torch.Generator().manual_seed(seed + 7))
        half = len(order) // 2
        self.halves = (order[:half].numpy(), order[half:].numpy())
        self.y, self.scale = y, scale

    def rmse(self, pred, y) -> float:
        return rmse(torch.from_numpy(np.asarray(pred)), torch.from_numpy(np.asarray(y)),
                    self.scale)

    def score(self, X: dict, fit) -> dict:
        """cv: pooled RMSE over valid of ``fit`` on one half, scored on the other; test: of
        ``fit`` on all of valid."""
        yv, err = self.y["valid"], 0.0
        for a, b in ((0, 1), (1, 0)):
            w = fit(X["valid"][self.halves[a]], yv[self.halves[a]])
            err += len(self.halves[b]) * self.rmse(X["valid"][self.halves[b]] @ w,
                                                   yv[self.halves[b]]) ** 2
        w = fit(X["valid"], yv)
        return {"cv_valid_rmse": float(np.sqrt(err / len(yv))),
                "test_rmse": self.rmse(X["test"] @ w, self.y["test"]),
                "weights": [float(v) for v in w]}


def nnls_offset(cols: dict) -> dict:
    """The design of the default mix: the members' predictions and +1/-1 columns."""
    out = {}
    for p, c in cols.items():
        M = np.stack(c, 1)
        out[p] = np.hstack([M, np.ones((len(M), 1)), -np.ones((len(M), 1))])
    return out


def fit_nnls(X, y):
    return nnls(X, y)[0]


def fwls_design(P: dict, meta: dict, feats) -> dict:
    """[members, 1, members x z_f, z_f for each feature f]; z: standardised on valid."""
    stats = {f: (meta["valid"][f].mean(), meta["valid"][f].std()) for f in feats}
    out = {}
    for p in P:
        cols = [P[p], np.ones((len(P[p]), 1))]
        for f in feats:
            z = ((meta[p][f] - stats[f][0]) / stats[f][1])[:, None]
            cols += [P[p] * z, z]
        out[p] = np.hstack(cols)
    return out


def ridge(lam: float, free: int):
    """Least squares with lam * n on every coefficient after the first ``free``."""
    def fit(X, y):
        reg = lam * len(X) * np.eye(X.shape[1])
        reg[:free, :free] = 0.0
        return np.linalg.solve(X.T @ X + reg, X.T @ y)
    return fit


def one_seed(run: Path, threads: int) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")))
    enc = load_encoded(cfg, rd)
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    models = {n: rd.load_member(n)[0] for n in MEMBERS}
    models["uknn"], meta_u = fitted_knn(run, threads, "uknn")
    parts = ("valid", "test")
    pred = {p: {n: predict_ratings(m, enc.parts[p].user, enc.parts[p].item).double().numpy()
                for n, m in models.items()} for p in parts}
    y = {p: enc.parts[p].rating.double().numpy() for p in parts}
    fold = Fold(y, cfg.seed, scale)
    extra, svdpp_seconds = svdpp_column(enc, cfg.seed)
    for p in parts:
        pred[p]["svdpp"] = extra[p]
    out = {"uknn": {"k": meta_u["arch"]["k"], "valid_rmse": meta_u["valid"]["rmse"],
                    "test_rmse": meta_u["test"]["rmse"]},
           "svdpp": {"valid_rmse": fold.rmse(extra["valid"], y["valid"]),
                     "test_rmse": fold.rmse(extra["test"], y["test"]),
                     "fit_seconds": svdpp_seconds}}
    for label, cols in (("default", MEMBERS), ("+uknn", MEMBERS + ("uknn",)),
                        ("+svdpp", MEMBERS + ("svdpp",))):
        out[label] = fold.score(nnls_offset({p: [pred[p][n] for n in cols] for p in parts}),
                                fit_nnls)
    n_u = np.bincount(enc.parts["train"].user.numpy(), minlength=enc.schema.n_users)
    n_i = np.bincount(enc.parts["train"].item.numpy(), minlength=enc.schema.n_items)
    meta = {p: {"users": np.log1p(n_u[enc.parts[p].user.numpy()]),
                "items": np.log1p(n_i[enc.parts[p].item.numpy()]),
                "support": np.log1p(in_chunks(models["knn"].support, enc.parts[p]))}
            for p in parts}
    P = {p: np.stack([pred[p][n] for n in MEMBERS], 1) for p in parts}
    for feats in FEATURE_SETS:
        X = fwls_design(P, meta, feats)
        tried = {lam: fold.score(X, ridge(lam, len(MEMBERS) + 1)) for lam in RIDGES}
        lam = min(RIDGES, key=lambda v: tried[v]["cv_valid_rmse"])
        out["fwls:" + "+".join(feats)] = {**tried[lam], "ridge": lam,
                                          "cv_by_ridge": {str(v): tried[v]["cv_valid_rmse"]
                                                          for v in RIDGES}}
    ens = read_json(rd.root / "teachers.json")["ensemble"]["rmse"]
    out["teacher_test_rmse"] = ens              # the run's own mix: equals "default"'s test
    print(run.name, json.dumps({k: v.get("cv_valid_rmse") if isinstance(v, dict) else v
                                for k, v in out.items()}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}", a.threads) for s in seeds}
    mixes = [k for k, v in per_seed[seeds[0]].items() if isinstance(v, dict) and
             "cv_valid_rmse" in v]
    summary = {}
    for k in mixes:
        summary[k] = {f: float(np.mean([per_seed[s][k][f] for s in seeds]))
                      for f in ("cv_valid_rmse", "test_rmse")}
        diff = [per_seed[s][k]["cv_valid_rmse"] - per_seed[s]["default"]["cv_valid_rmse"]
                for s in seeds]
        summary[k]["cv_minus_default"] = diff
        summary[k]["lower_on_valid_in"] = f"{sum(d < 0 for d in diff)} of {len(seeds)}"
    out = {"runs": a.runs, "seeds": seeds, "members": list(MEMBERS), "summary": summary,
           "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for k, v in summary.items():
        print(f"{k:28s} cv valid {v['cv_valid_rmse']:.4f}  test {v['test_rmse']:.4f}  "
              f"lower on valid in {v['lower_on_valid_in']}")


if __name__ == "__main__":
    main()
