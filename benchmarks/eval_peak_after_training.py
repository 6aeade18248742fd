"""The open memory question of issue 13: full-catalogue evaluation's peak RSS after training.

On the synthetic ML-20M-shaped table of `benchmarks/scale.py` (written there first), trains
the default student for one epoch on the first ``--train-rows`` train ratings, then ranks
every test user ``--reps`` times in a row, printing each pass's own peak RSS. Seen so far:
the first pass after training peaks far above the later ones (which stay near 2 GB), by an
amount that varies from run to run; evaluation before any training does not::

    .venv/bin/python benchmarks/eval_peak_after_training.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path,
                    default=Path("/tmp/pakd-scale/synthetic_138493x26744_20000263_seed0.csv"))
    ap.add_argument("--train-rows", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from pakd.config import build_config
    from pakd.data.encoding import Part, encode
    from pakd.data.generic import load_table
    from pakd.data.splits import make_split
    from pakd.evaluate import ranking_metrics
    from pakd.memory import peak_mb, reset_peak
    from pakd.models import build
    from pakd.recipes.distill import student_arch, student_tables
    from pakd.train import fit

    ds = load_table(args.csv, columns={"user": "userId", "item": "movieId"},
                    rating_scale=(0.5, 5.0))
    enc = encode(ds, make_split(ds.ratings, seed=0))
    del ds
    cfg = build_config()
    arch = student_arch(cfg, enc)
    model = build("lightweight_model", enc.schema, arch, tables=student_tables(enc, arch),
                  rating_mean=3.5)
    full = enc.parts["train"]
    if args.train_rows:
        n = args.train_rows
        enc.parts["train"] = Part(full.user[:n], full.item[:n], full.rating[:n])
        f = cfg.distill
        fit(model, enc, epochs=1, batch_size=f.batch_size, lr=f.lr, weight_decay=f.weight_decay,
            l2=f.l2, negatives=f.negatives, ranking_loss="softmax", rating_loss_weight=1.0,
            ranking_loss_weight=1.0, patience=1, monitor="loss", micro_batch=0,
            negative_sampling="popularity", retrieval_share=0.5, retrieval_n=100, seed=0,
            quiet=True)
        enc.parts["train"] = full
        enc._seen.clear()
    for rep in range(args.reps):
        reset_peak()
        t0 = time.perf_counter()
        ranking_metrics(model, enc, "test", ks=[10], relevant_min_rating=None, chunk=512)
        print(f"pass {rep + 1}: peak RSS {peak_mb():,.0f} MB, {time.perf_counter() - t0:.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
