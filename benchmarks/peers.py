"""Peers on pakd's own split, each tuned on the valid part: Surprise SVD (rating), implicit
ALS and EASE (top-K), and MostPop, printed beside pakd's teachers from RUN/teachers.json.

    .venv/bin/pip install -e '.[peers]'        # scikit-surprise, implicit
    .venv/bin/python benchmarks/peers.py --run runs/default

Every peer reads RUN/split.csv (the identical rows pakd trained and tested on), trains on
the train part only, and is scored with pakd.metrics: RMSE/MAE clipped to the rating
scale, full-catalogue top-K with the user's train and valid items excluded. Settings are
chosen on the valid part, never on test, the way pakd's members are:

- Surprise SVD: factors x learning rate x regularisation x epochs, by valid RMSE;
- EASE: the L2 strength lambda, by valid NDCG@10;
- implicit ALS: factors x regularisation x alpha, by valid NDCG@10.

Each grid is searched whole; then, while the best value of a numeric setting sits at an
edge of its grid, one more value beyond that edge is tried (the others held at their best;
at most ``EXTEND`` per setting). A choice still at an edge afterwards is reported as such
(``at_edge``), so a reader knows the grid may have cut the peer short; a setting with one
value is given, not chosen. The chosen settings, their valid figure, every point tried and
the tuning time are written beside each peer's test metrics in RUN/benchmarks/peers.json.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from pakd import metrics as M
from pakd.config import EvalConfig, build_config, load_run_config
from pakd.data.splits import read_split
from pakd.report import markdown_table
from pakd.results import TeachersReport, load_result
from pakd.rundir import RunDir, read_json, write_json

# the grids (every combination is tried); measured on ml-latest-small: the whole benchmark
# about 10 minutes on 2 cores (benchmarks/results/*_members/peers_time.txt)
SVD_GRID = {"n_factors": [50, 100, 200], "lr_all": [0.005, 0.01],
            "reg_all": [0.02, 0.05, 0.1, 0.2], "n_epochs": [20, 40, 80]}
EASE_GRID = {"lam": [10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]}
ALS_GRID = {"factors": [32, 64, 128, 256], "regularization": [0.01, 0.1, 1.0, 10.0],
            "alpha": [1.0, 5.0, 20.0]}
ALS_ITERATIONS = 15
EXTEND = 3          # most values tried beyond an edge, per setting


# ----------------------------------------------------------------------------- tuning

@dataclass
class Tuned:
    """What `tune` chose: the best point, its valid figure and what it returned (``kept``),
    every point tried, the settings still at an edge of their values, and a note."""
    best: dict
    figure: float
    kept: object
    rows: list[dict] = field(default_factory=list)
    axes: dict = field(default_factory=dict)
    at_edge: dict = field(default_factory=dict)
    note: str = ""

    def summary(self, figure_name: str) -> dict:
        return {"settings": self.best, f"valid_{figure_name}": self.figure,
                "at_edge": self.at_edge, "grid": self.axes, "points": len(self.rows),
                "tried": self.rows, "note": self.note}


def _beyond(values: list, side: str):
    """One value past an edge of a numeric setting's sorted values (the ratio of the last
    two; integers stay integers and distinct), or None when there is none to try."""
    if len(values) < 2 or not all(isinstance(v, (int, float)) for v in values):
        return None
    a, b = (values[1], values[0]) if side == "lower" else (values[-2], values[-1])
    if a <= 0 or b <= 0:
        return None
    new = b * (b / a)
    if all(isinstance(v, int) for v in values):
        new = int(round(new))
        if new in values or new < 1:
            return None
    return new


def tune(axes: dict[str, list], evaluate, *, minimise: bool, extend: bool = True,
         label: str = "", log=print) -> Tuned:
    """Search ``axes`` (setting -> values) with ``evaluate(point) -> (figure, kept)``: every
    combination, then (``extend``) one value at a time past the edge the best point sits
    on. Lower figures win with ``minimise``."""
    axes = {k: sorted(v) for k, v in axes.items()}
    empty = [k for k, v in axes.items() if not v]
    if empty:
        raise ValueError(f"{label}: no value to try for {', '.join(empty)}")
    rows, best = [], None
    better = (lambda a, b: a < b) if minimise else (lambda a, b: a > b)

    def run(point: dict):
        nonlocal best
        t0 = time.perf_counter()
        fig, kept = evaluate(point)
        rows.append({**point, "figure": fig, "seconds": time.perf_counter() - t0})
        log(f"  {label} {point}: {fig:.4f} ({rows[-1]['seconds']:.1f}s)")
        if best is None or better(fig, best[0]):
            best = (fig, dict(point), kept)

    for combo in itertools.product(*axes.values()):
        run(dict(zip(axes, combo)))
    extra = {k: 0 for k in axes}
    while extend:
        moved = False
        for k, values in axes.items():
            side = _edge(best[1][k], values)
            if side is None or extra[k] >= EXTEND:
                continue
            new = _beyond(values, side)
            if new is None:
                continue
            extra[k] += 1
            axes[k] = sorted(values + [new])
            run({**best[1], k: new})
            moved = True
        if not moved:
            break
    at_edge = {k: _edge(best[1][k], v) for k, v in axes.items()}
    at_edge = {k: side for k, side in at_edge.items() if side}
    given = [k for k, v in axes.items() if len(v) == 1]
    notes = []
    if given:
        notes.append(f"{', '.join(given)}: one value, given rather than chosen")
    for k, side in at_edge.items():
        notes.append(f"{k} {best[1][k]:g} is at the {side} edge of the values tried "
                     f"({axes[k][0]:g} to {axes[k][-1]:g}): a wider grid might do better")
    return Tuned(best[1], best[0], best[2], rows, axes, at_edge, "; ".join(notes))


def _edge(value, values: list) -> str | None:
    if len(values) < 2:
        return None
    return "lower" if value == values[0] else "upper" if value == values[-1] else None


# ----------------------------------------------------------------------------- data

@dataclass
class Data:
    """A split as index arrays and CSR matrices, the way every peer reads it."""
    n_users: int
    n_items: int
    frame: object                     # the split (pandas), original IDs
    u: np.ndarray                     # per row, user index
    i: np.ndarray                     # per row, item index
    part: np.ndarray
    scale: tuple[float, float]
    X: sp.csr_matrix                  # train, binary
    rel_valid: sp.csr_matrix
    rel_test: sp.csr_matrix
    exc_valid: sp.csr_matrix
    exc_test: sp.csr_matrix

    @classmethod
    def of(cls, frame, scale=None) -> "Data":
        users = np.sort(frame["user"].unique())
        items = np.sort(frame["item"].unique())
        u = np.searchsorted(users, frame["user"].to_numpy())
        i = np.searchsorted(items, frame["item"].to_numpy())
        part = frame["part"].to_numpy()
        nu, ni = len(users), len(items)
        tr, va, te = part == "train", part == "valid", part == "test"
        X = _csr(u[tr], i[tr], nu, ni)
        rv, rt = _csr(u[va], i[va], nu, ni), _csr(u[te], i[te], nu, ni)
        scale = scale or (float(frame.rating.min()), float(frame.rating.max()))
        return cls(nu, ni, frame, u, i, part, scale, X, rv, rt, X.astype(bool),
                   (X + rv).astype(bool))


def _csr(u, i, n_users, n_items, values=None):
    v = np.ones(len(u), np.float32) if values is None else values
    m = sp.csr_matrix((v, (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def topk(scores, relevant, exclude, ks=(10, 20)) -> dict:
    s = torch.as_tensor(scores, dtype=torch.float32)
    return M.topk_metrics(lambda u: s[u], relevant, exclude, ks=ks)


def valid_ndcg(scores, d: Data) -> float:
    return topk(scores, d.rel_valid, d.exc_valid, ks=(10,))["ndcg@10"]


# ----------------------------------------------------------------------------- peers

def surprise_svd(d: Data, seed: int, grid=None, extend: bool = True, log=print) -> dict:
    from surprise import SVD, Dataset, Reader
    f = d.frame
    tr, va, te = (f[f.part == p] for p in ("train", "valid", "test"))
    data = Dataset.load_from_df(tr[["user", "item", "rating"]],
                                Reader(rating_scale=d.scale)).build_full_trainset()

    def predict(algo, rows):
        return np.array([algo.predict(u, i).est for u, i in zip(rows.user, rows.item)])

    def evaluate(p):
        algo = SVD(random_state=seed, **p)
        t0 = time.perf_counter()
        algo.fit(data)
        secs = time.perf_counter() - t0
        return M.rmse(predict(algo, va), va.rating.to_numpy(), d.scale), (algo, secs)

    t = tune(grid or SVD_GRID, evaluate, minimise=True, extend=extend, label="Surprise SVD",
             log=log)
    algo, secs = t.kept
    pred = predict(algo, te)
    return {"rmse": M.rmse(pred, te.rating.to_numpy(), d.scale),
            "mae": M.mae(pred, te.rating.to_numpy(), d.scale), "train_seconds": secs,
            **t.summary("rmse")}


def ease_scorer(X: sp.csr_matrix):
    """lam -> EASE's scores X B of the train users, B = I - P / diag(P) with
    P = (X'X + lam I)^-1, from one eigendecomposition of the smaller Gram matrix: with fewer
    users than items X P = (XX' + lam I)^-1 X and diag(P) = (1 - sum_u X * XP) / lam (push-
    through and Woodbury identities), so nothing items x items is formed."""
    Xd = X.toarray().astype(np.float64)
    n_users, n_items = Xd.shape
    if n_users < n_items:
        s, V = np.linalg.eigh(Xd @ Xd.T)
        VtX = V.T @ Xd

        def scores(lam):
            XP = V @ (VtX / (s + lam)[:, None])
            diag = (1.0 - (Xd * XP).sum(0)) / lam
            return Xd - XP / diag
    else:
        s, V = np.linalg.eigh(Xd.T @ Xd)
        XV = Xd @ V

        def scores(lam):
            P = (V / (s + lam)) @ V.T
            return Xd - (XV / (s + lam)) @ V.T / np.diag(P)
    return scores


def ease(d: Data, grid=None, extend: bool = True, log=print) -> dict:
    t0 = time.perf_counter()
    scores = ease_scorer(d.X)

    def evaluate(p):
        s = scores(p["lam"])
        return valid_ndcg(s, d), s

    t = tune(grid or EASE_GRID, evaluate, minimise=False, extend=extend, label="EASE", log=log)
    out = topk(t.kept, d.rel_test, d.exc_test)
    out.update(train_seconds=time.perf_counter() - t0, **t.summary("ndcg@10"))
    return out


def als(d: Data, seed: int, grid=None, extend: bool = True, log=print) -> dict:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.als import AlternatingLeastSquares
    X = d.X.tocsr()

    def evaluate(p):
        m = AlternatingLeastSquares(iterations=ALS_ITERATIONS, random_state=seed, **p)
        t0 = time.perf_counter()
        m.fit(X, show_progress=False)
        secs = time.perf_counter() - t0
        s = np.asarray(m.user_factors) @ np.asarray(m.item_factors).T
        return valid_ndcg(s, d), (s, secs)

    t = tune(grid or ALS_GRID, evaluate, minimise=False, extend=extend, label="implicit ALS",
             log=log)
    s, secs = t.kept
    out = topk(s, d.rel_test, d.exc_test)
    out.update(train_seconds=secs, iterations=ALS_ITERATIONS, **t.summary("ndcg@10"))
    return out


def settings_text(m: dict) -> str:
    s = m.get("settings")
    if not s:
        return ""
    text = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                     for k, v in s.items())
    if m.get("at_edge"):
        text += " (at an edge: " + ", ".join(f"{k} {side}" for k, side in m["at_edge"].items()) + ")"
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="pakd run directory (split.csv, teachers.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of peers to skip: svd,als,ease")
    ap.add_argument("--no-extend", action="store_true",
                    help="search the grids only, never past their edges")
    a = ap.parse_args(argv)
    rd = RunDir(a.run)
    skip = set(filter(None, a.skip.split(",")))
    unknown = skip - {"svd", "als", "ease"}
    if unknown:
        ap.error(f"--skip {','.join(sorted(unknown))}: the peers are svd, als and ease")
    frame = read_split(rd.root).frame
    tj = load_result(rd.teachers_json, TeachersReport) if rd.teachers_json.is_file() else None
    raw = load_run_config(rd.config)
    ks = tuple(build_config(base=raw).eval.ks if raw else EvalConfig().ks)
    scale = None
    for name in ("svd", "xdeepfm", "autoint"):   # the dataset's declared scale, as the
        if rd.has_member(name):                    # teachers were evaluated with
            sch = read_json(rd.member(name).with_suffix(".json"))["schema"]
            scale = (float(sch["rating_min"]), float(sch["rating_max"]))
            break
    d = Data.of(frame, scale)
    peers, seconds = {}, {}
    t0 = time.perf_counter()
    pop = np.asarray(d.X.sum(0)).ravel()
    peers["MostPop"] = topk(np.broadcast_to(pop, (d.n_users, d.n_items)), d.rel_test,
                            d.exc_test, ks)
    extend = not a.no_extend
    for key, name, fn in (("svd", "Surprise SVD", lambda: surprise_svd(d, a.seed, extend=extend)),
                          ("als", "implicit ALS", lambda: als(d, a.seed, extend=extend)),
                          ("ease", "EASE", lambda: ease(d, extend=extend))):
        if key in skip:
            continue
        t1 = time.perf_counter()
        try:
            peers[name] = fn()
        except ImportError:
            print(f"{name}: its library is missing: pip install -e '.[peers]'", file=sys.stderr)
            continue
        seconds[name] = time.perf_counter() - t1
        peers[name]["tuning_seconds"] = seconds[name]
        if peers[name]["note"]:
            print(f"{name}: {peers[name]['note']}")
    rows = [{"model": f"pakd {n}", **m} for n, m in (tj.members if tj else {}).items()]
    if tj:
        rows.append({"model": "pakd ensemble", **tj.ensemble})
    rows += [{"model": n, **m, "chosen": settings_text(m)} for n, m in peers.items()]
    cols = [("model", "model"), ("rmse", "RMSE"), ("mae", "MAE"), ("auc", "AUC"),
            ("recall@10", "Recall@10"), ("ndcg@10", "NDCG@10"), ("recall@20", "Recall@20"),
            ("ndcg@20", "NDCG@20"), ("chosen", "settings chosen on valid")]
    part = d.part
    print(f"Split: {rd.split_csv} ({(part == 'train').sum()} train / {(part == 'valid').sum()} "
          f"valid / {(part == 'test').sum()} test)")
    print(markdown_table(rows, cols))
    total = time.perf_counter() - t0
    print(f"tuning and testing: {', '.join(f'{n} {s:.0f}s' for n, s in seconds.items())}; "
          f"all {total:.0f}s on {torch.get_num_threads()} torch threads")
    write_json(rd.peers_json, {"peers": peers, "seconds": total, "grids": {
        "Surprise SVD": SVD_GRID, "EASE": EASE_GRID, "implicit ALS": ALS_GRID},
        "extend": extend})
    return 0


if __name__ == "__main__":
    sys.exit(main())
