"""The open memory question of issue 13: full-catalogue evaluation's peak RSS after training.

On the synthetic ML-20M-shaped table of `benchmarks/scale.py` (written there first), trains
the default student for one epoch on the first ``--train-rows`` train ratings, then ranks
every test user ``--reps`` times in a row, printing each pass's own peak RSS. Seen so far:
the first pass after training peaks far above the later ones, by an amount that varies
from run to run (``--train-rows 0``: the same passes with the student untrained)::

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
    from scale import student_epoch      # benchmarks/ is on the path of a benchmark script

    ds = load_table(args.csv, columns={"user": "userId", "item": "movieId"},
                    rating_scale=(0.5, 5.0))
    enc = encode(ds, make_split(ds.ratings, seed=0))
    del ds
    cfg = build_config()
    if args.train_rows:
        full, n = enc.parts["train"], args.train_rows
        enc.parts["train"] = Part(full.user[:n], full.item[:n], full.rating[:n])
        model, _, _ = student_epoch(cfg, enc, ranking_loss="softmax", seed=0, quiet=True,
                                    rating_mean=3.5)
        enc.parts["train"] = full
        enc._seen.clear()        # the train-only seen matrix was built from the prefix
    else:                        # 0: the same student, untrained
        arch = student_arch(cfg, enc)
        model = build("lightweight_model", enc.schema, arch,
                      tables=student_tables(enc, arch), rating_mean=3.5)
    for rep in range(args.reps):
        reset_peak()
        t0 = time.perf_counter()
        ranking_metrics(model, enc, "test", ks=[10], relevant_min_rating=None, chunk=512)
        print(f"pass {rep + 1}: peak RSS {peak_mb():,.0f} MB, {time.perf_counter() - t0:.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
