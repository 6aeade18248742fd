"""What a rating member and a rating offset add to the ensemble's rating mix, measured on
finished runs: the item-neighbourhood member (`pakd.models.knn`) is fitted in a scratch copy
of each seed's run (`pakd train --models knn`: the neighbour count chosen on valid RMSE),
then the rating mix (`Ensemble.fit_rating_mix`: non-negative least squares on valid) is
fitted with and without it, with and without a free constant (``--rating-offset``). The
choice is made on the valid part only: the valid ratings are split in two halves
(seeded), the mix fitted on one half and scored on the other (RMSE of both folds, pooled);
the mix fitted on every valid rating is then scored on the test part, which only reports.

    python benchmarks/rating_members.py --runs runs/mix --seeds 0,1,2,3,4 \
        --out benchmarks/results/2026-12-07_knn_member/random.json
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.data import load_encoded
from pakd.evaluate import predict_ratings
from pakd.metrics import rmse
from pakd.models.ensemble import Ensemble, default_task
from pakd.rundir import RunDir, read_json

RUN_FILES = ("run.yaml", "split.csv", "split.json")


def fitted_knn(run: Path, threads: int, member: str = "knn") -> tuple:
    """The ``member`` (a closed-form one) `pakd train` fits on ``run``'s split, in a scratch
    copy of its settings and split (the run itself is left as it is): (model, metadata)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUN_FILES:
            shutil.copy(run / name, Path(tmp) / name)
        subprocess.run([sys.executable, "-m", "pakd", "train", "--run", tmp, "--models",
                        member, "--quiet"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        model, meta = RunDir(tmp).load_member(member)
    return model, meta


VARIANTS = {"members": (False, False), "members+offset": (False, True),
            "members+knn": (True, False), "members+knn+offset": (True, True)}


def cross_fitted(ens: Ensemble, preds: dict, y: torch.Tensor, halves, scale,
                 offset: bool) -> float:
    """RMSE over the valid ratings of mixes fitted on the other half."""
    err = []
    for a, b in ((0, 1), (1, 0)):
        ens.fit_rating_mix({n: p[halves[a]] for n, p in preds.items()}, y[halves[a]],
                           offset=offset)
        got = ens.combine_ratings({n: p[halves[b]] for n, p in preds.items()})
        err.append(len(halves[b]) * rmse(got, y[halves[b]], scale) ** 2)
    return float(np.sqrt(sum(err) / len(y)))


def one_seed(run: Path, members: list[str], threads: int, same_day: bool = False) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")))
    enc = load_encoded(cfg, rd)
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    models = {n: rd.load_member(n)[0] for n in members}
    models["knn"], meta = fitted_knn(run, threads)
    raters = [n for n, m in models.items() if "rating" in m.outputs]
    preds = {p: {n: predict_ratings(models[n], enc.parts[p].user, enc.parts[p].item).double()
                 for n in raters} for p in ("valid", "test")}
    y = {p: enc.parts[p].rating.double() for p in ("valid", "test")}
    order = torch.randperm(len(y["valid"]), generator=torch.Generator().manual_seed(cfg.seed + 7))
    half = len(order) // 2
    halves = (order[:half], order[half:])
    out = {"knn": {"k": meta["arch"]["k"], "valid_rmse": meta["valid"]["rmse"],
                   "test_rmse": meta["test"]["rmse"], "params": meta["params"],
                   "fit_seconds": meta["fit"]["fit_seconds"]}}
    for label, (knn, offset) in VARIANTS.items():
        names = [n for n in raters if knn or n != "knn"]
        ens = Ensemble({n: models[n] for n in names}, {n: 1.0 for n in names},
                       {n: default_task(models[n].outputs) for n in names})
        cv = cross_fitted(ens, {n: preds["valid"][n] for n in names}, y["valid"], halves,
                          scale, offset)
        ens.fit_rating_mix({n: preds["valid"][n] for n in names}, y["valid"], offset=offset)
        test = rmse(ens.combine_ratings({n: preds["test"][n] for n in names}), y["test"], scale)
        out[label] = {"members": names, "cv_valid_rmse": cv, "test_rmse": test,
                      "rating_mix": dict(ens.rating_mix), "rating_offset": ens.rating_offset}
    peers = rd.root / "benchmarks" / "peers.json"
    if peers.is_file():
        svd = read_json(peers)["peers"].get("Surprise SVD")
        if svd:
            out["surprise_svd_test_rmse"] = svd["rmse"]
            for label in VARIANTS:
                out[label]["test_rmse_over_surprise_svd"] = out[label]["test_rmse"] / svd["rmse"]
    if same_day:
        out["members+knn+offset+same_day"] = with_same_day(
            enc, models["knn"], {p: [preds[p][n] for n in raters] for p in preds}, y, halves,
            scale)
    print(run.name, json.dumps(out), flush=True)
    return out


def same_day_residual(enc, knn, part: str, shrink: float = 10.0) -> torch.Tensor:
    """Per rating of ``part``: the user's train residuals (rating minus knn's baseline) on
    the same UTC day, summed and divided by (their count + ``shrink``)."""
    tr = enc.parts["train"]
    base = knn.rating_mean + knn.user_bias[tr.user] + knn.item_bias[tr.item]
    resid = (tr.rating.double() - base.double()).numpy()
    day = tr.timestamp.numpy() // 86400
    key = tr.user.numpy().astype(np.int64) * 10**6 + (day - day.min())
    uniq, inv = np.unique(key, return_inverse=True)
    total, count = np.bincount(inv, resid), np.bincount(inv)
    q = enc.parts[part]
    qkey = q.user.numpy().astype(np.int64) * 10**6 + (q.timestamp.numpy() // 86400 - day.min())
    at = np.clip(np.searchsorted(uniq, qkey), 0, len(uniq) - 1)
    hit = uniq[at] == qkey
    return torch.from_numpy(np.where(hit, total[at] / (count[at] + shrink), 0.0))


def with_same_day(enc, knn, preds: dict, y: dict, halves, scale) -> dict:
    """The members, the same-day residual and an offset by non-negative least squares
    (the offset as two columns), cross-fitted on valid as `cross_fitted`, then on test."""
    from scipy.optimize import nnls

    def design(part):
        cols = preds[part] + [same_day_residual(enc, knn, part)]
        X = torch.stack([c.double() for c in cols], 1).numpy()
        return np.hstack([X, np.ones((len(X), 1)), -np.ones((len(X), 1))])
    Xv, Xt, yv = design("valid"), design("test"), y["valid"].numpy()
    err = 0.0
    for a, b in ((0, 1), (1, 0)):
        w, _ = nnls(Xv[halves[a]], yv[halves[a]])
        err += len(halves[b]) * rmse(Xv[halves[b]] @ w, yv[halves[b]], scale) ** 2
    w, _ = nnls(Xv, yv)
    share = float((Xv[:, -3] != 0).mean())     # the same-day column
    return {"cv_valid_rmse": float(np.sqrt(err / len(yv))),
            "test_rmse": rmse(Xt @ w, y["test"].numpy(), scale), "weights": w.tolist(),
            "valid_share_with_same_day_train_ratings": share}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--members", default="svd,autoint", help="the run's rating members")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--same-day", action="store_true",
                    help="also the mix with the same-day residual column (needs timestamps)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}", a.members.split(","), a.threads,
                            a.same_day) for s in seeds}
    summary = {}
    for label in VARIANTS:
        summary[label] = {k: float(np.mean([per_seed[s][label][k] for s in seeds]))
                          for k in ("cv_valid_rmse", "test_rmse")}
        if label != "members":
            diff = [per_seed[s][label]["cv_valid_rmse"] - per_seed[s]["members"]["cv_valid_rmse"]
                    for s in seeds]
            summary[label]["cv_valid_rmse_minus_members"] = diff
            summary[label]["lower_on_valid_in"] = f"{sum(d < 0 for d in diff)} of {len(seeds)}"
    summary["chosen_on_valid"] = min(VARIANTS, key=lambda k: summary[k]["cv_valid_rmse"])
    if a.same_day:                 # beside the choice: pakd's models cannot take it as input
        day = "members+knn+offset+same_day"
        summary[day] = {k: float(np.mean([per_seed[s][day][k] for s in seeds]))
                        for k in ("cv_valid_rmse", "test_rmse")}
        summary[day]["cv_valid_rmse_minus_knn_offset"] = [
            per_seed[s][day]["cv_valid_rmse"] - per_seed[s]["members+knn+offset"]["cv_valid_rmse"]
            for s in seeds]
    out = {"runs": a.runs, "seeds": seeds, "members": a.members.split(","),
           "summary": summary, "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for label in VARIANTS:
        v = summary[label]
        lower = v.get("lower_on_valid_in")
        print(f"{label:20s} cv valid RMSE {v['cv_valid_rmse']:.4f}  test {v['test_rmse']:.4f}"
              + (f"  lower on valid in {lower} seeds" if lower else ""))
    print("chosen on valid:", summary["chosen_on_valid"])

if __name__ == "__main__":
    main()
