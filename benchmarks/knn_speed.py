"""How fast the knn member (and the ensemble that holds it) predicts pairs with each of its
two neighbour searches: over the pair's own stored entries (what `predict_pairs` runs) and
over the catalogue-wide layout (what ONNX export traces, and what `predict_pairs` ran before
the search over stored entries). Rounds alternate the two; the predictions are compared.

    python benchmarks/knn_speed.py --run runs/base/seed-0 \
        --out benchmarks/results/2026-12-07_knn_speed/seed-0.json
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pakd.atomic import atomic_write_text
from pakd.bench import throughput
from pakd.models.knn import ItemKNN
from pakd.rundir import RunDir
from pakd.runtime import environment

SEARCHES = {"stored entries": ItemKNN.predict_pairs,
            "catalogue layout": ItemKNN.predict_pairs_laid_out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rd = RunDir(a.run)
    models = {"knn": rd.load_member("knn")[0], "ensemble": rd.load_ensemble()}
    nu, ni = models["knn"].schema.n_users, models["knn"].schema.n_items
    got = {(m, s): [] for m in models for s in SEARCHES}
    preds = {}
    g = torch.Generator().manual_seed(0)
    u, i = torch.randint(0, nu, (a.batch,), generator=g), torch.randint(0, ni, (a.batch,),
                                                                            generator=g)
    try:
        with torch.inference_mode():
            for r in range(a.rounds):
                for s in (list(SEARCHES) if r % 2 == 0 else list(SEARCHES)[::-1]):
                    ItemKNN.predict_pairs = SEARCHES[s]
                    preds[s] = models["knn"].predict_pairs(u, i)
                    for m, model in models.items():
                        got[(m, s)].append(throughput(model, nu, ni, a.batch, a.seconds,
                                                      seed=r, warmup=2 if r == 0 else 1))
    finally:
        ItemKNN.predict_pairs = SEARCHES["stored entries"]
    rows = {m: {s: float(np.median(got[(m, s)])) for s in SEARCHES} for m in models}
    for m in rows:
        rows[m]["speed-up"] = rows[m]["stored entries"] / rows[m]["catalogue layout"]
    diff = (preds["stored entries"] - preds["catalogue layout"]).abs().max().item()
    out = {"run": a.run, "batch": a.batch, "rounds": a.rounds, "threads": a.threads,
           "pairs_per_second_median": rows, "per_round": {f"{m} / {s}": v for (m, s), v in
                                                         got.items()},
           "max_abs_rating_difference": diff, "when": time.strftime("%Y-%m-%d %H:%M"),
           "environment": environment()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
    for m, row in rows.items():
        print(f"{m:9s} stored entries {row['stored entries']:9,.0f} pairs/s  catalogue layout "
              f"{row['catalogue layout']:9,.0f}  x{row['speed-up']:.1f}")
    print("largest rating difference", diff)


if __name__ == "__main__":
    main()
