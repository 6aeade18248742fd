"""Peers on pakd's own split: Surprise SVD (rating), implicit ALS, EASE and MostPop (top-K),
printed beside pakd's teachers from RUN/teachers.json.

    .venv/bin/pip install -e '.[peers]'        # scikit-surprise, implicit
    .venv/bin/python benchmarks/peers.py --run runs/default

Every peer reads RUN/split.csv (the identical rows pakd trained and tested on) and is scored
with pakd.metrics: RMSE/MAE clipped to the rating scale, full-catalogue top-K with the
user's train and valid items excluded. Hyper-parameters that need choosing (ALS factors and
regularisation, EASE's lambda) are chosen on the valid part, never on test.
Writes RUN/benchmarks/peers.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from pakd import metrics as M
from pakd.config import EvalConfig, build_config, load_run_config
from pakd.data.splits import read_split
from pakd.report import markdown_table
from pakd.rundir import RunDir, read_json, write_json


def _encode(frame):
    users = np.sort(frame["user"].unique())
    items = np.sort(frame["item"].unique())
    u = np.searchsorted(users, frame["user"].to_numpy())
    i = np.searchsorted(items, frame["item"].to_numpy())
    return users, items, u, i


def _csr(u, i, n_users, n_items, values=None):
    v = np.ones(len(u), np.float32) if values is None else values
    m = sp.csr_matrix((v, (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def topk(scores: np.ndarray | torch.Tensor, relevant, exclude, ks=(10, 20)) -> dict:
    s = torch.as_tensor(scores, dtype=torch.float32)
    return M.topk_metrics(lambda u: s[u], relevant, exclude, ks=ks)


def surprise_svd(frame, scale, seed):
    from surprise import SVD, Dataset, Reader
    tr = frame[frame.part == "train"]
    te = frame[frame.part == "test"]
    reader = Reader(rating_scale=scale)
    data = Dataset.load_from_df(tr[["user", "item", "rating"]], reader).build_full_trainset()
    algo = SVD(random_state=seed)      # library defaults: 100 factors, 20 epochs, lr .005, reg .02
    t0 = time.perf_counter()
    algo.fit(data)
    secs = time.perf_counter() - t0
    pred = np.array([algo.predict(u, i).est for u, i in zip(te.user, te.item)])
    return {"rmse": M.rmse(pred, te.rating.to_numpy(), scale),
            "mae": M.mae(pred, te.rating.to_numpy(), scale), "train_seconds": secs}


def als(X, rel_valid, exc_valid, rel_test, exc_test, seed):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.als import AlternatingLeastSquares
    best = None
    for factors in (32, 64, 128):
        for reg in (0.01, 0.1, 1.0):
            m = AlternatingLeastSquares(factors=factors, regularization=reg, iterations=15,
                                        random_state=seed)
            m.fit(X, show_progress=False)
            s = np.asarray(m.user_factors) @ np.asarray(m.item_factors).T
            nd = topk(s, rel_valid, exc_valid, ks=(10,))["ndcg@10"]
            if best is None or nd > best[0]:
                best = (nd, factors, reg, s)
    nd, factors, reg, s = best
    out = topk(s, rel_test, exc_test)
    out.update(factors=factors, regularization=reg, valid_ndcg10=nd)
    return out


def ease(X, rel_valid, exc_valid, rel_test, exc_test):
    G = (X.T @ X).toarray().astype(np.float64)
    diag = np.diag_indices_from(G)
    best = None
    for lam in (100.0, 250.0, 500.0, 1000.0, 2000.0):
        P = G.copy()
        P[diag] += lam
        P = np.linalg.inv(P)
        B = -P / np.diag(P)
        B[diag] = 0.0
        s = X @ B
        nd = topk(s, rel_valid, exc_valid, ks=(10,))["ndcg@10"]
        if best is None or nd > best[0]:
            best = (nd, lam, s)
    nd, lam, s = best
    out = topk(s, rel_test, exc_test)
    out.update(lam=lam, valid_ndcg10=nd)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="pakd run directory (split.csv, teachers.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of peers to skip: svd,als,ease")
    a = ap.parse_args(argv)
    rd = RunDir(a.run)
    skip = set(filter(None, a.skip.split(",")))
    frame = read_split(rd.root).frame
    tj = read_json(rd.teachers_json) if rd.teachers_json.is_file() else {}
    raw = load_run_config(rd.config)
    ks = tuple(build_config(base=raw).eval.ks if raw else EvalConfig().ks)
    users, items, u, i = _encode(frame)
    nu, ni = len(users), len(items)
    part = frame["part"].to_numpy()
    tr, va, te = part == "train", part == "valid", part == "test"
    X = _csr(u[tr], i[tr], nu, ni)
    rel_valid, rel_test = _csr(u[va], i[va], nu, ni), _csr(u[te], i[te], nu, ni)
    exc_valid = X.astype(bool)
    exc_test = (X + rel_valid).astype(bool)
    scale = (float(frame.rating.min()), float(frame.rating.max()))
    for name in ("svd", "xdeepfm", "autoint"):   # the dataset's declared scale, as the
        if rd.has_member(name):                    # teachers were evaluated with
            sch = read_json(rd.member(name).with_suffix(".json"))["schema"]
            scale = (float(sch["rating_min"]), float(sch["rating_max"]))
            break
    peers = {}
    t0 = time.perf_counter()
    pop = np.asarray(X.sum(0)).ravel()
    peers["MostPop"] = topk(np.broadcast_to(pop, (nu, ni)), rel_test, exc_test, ks)
    if "svd" not in skip:
        try:
            peers["Surprise SVD"] = surprise_svd(frame, scale, a.seed)
        except ImportError:
            print("scikit-surprise missing: pip install -e '.[peers]'", file=sys.stderr)
    if "als" not in skip:
        try:
            peers["implicit ALS"] = als(X, rel_valid, exc_valid, rel_test, exc_test, a.seed)
        except ImportError:
            print("implicit missing: pip install -e '.[peers]'", file=sys.stderr)
    if "ease" not in skip:
        peers["EASE"] = ease(X, rel_valid, exc_valid, rel_test, exc_test)
    rows = [{"model": f"pakd {n}", **m} for n, m in tj.get("members", {}).items()]
    if tj.get("ensemble"):
        rows.append({"model": "pakd ensemble", **tj["ensemble"]})
    rows += [{"model": n, **m} for n, m in peers.items()]
    cols = [("model", "model"), ("rmse", "RMSE"), ("mae", "MAE"), ("auc", "AUC"),
            ("recall@10", "Recall@10"), ("ndcg@10", "NDCG@10"), ("recall@20", "Recall@20"),
            ("ndcg@20", "NDCG@20")]
    print(f"Split: {rd.split_csv} ({tr.sum()} train / {va.sum()} valid / {te.sum()} test)")
    print(markdown_table(rows, cols))
    write_json(rd.peers_json, {"peers": peers, "seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
