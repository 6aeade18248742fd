"""Time and peak memory of pakd's stages on a synthetic table of ML-20M's shape (issue 13).

SYNTHETIC DATA: the ratings are drawn at random (users' activity log-normal with at least
20 ratings each, items by a power-law popularity, half-star ratings by a fixed histogram),
so the figures are for time and memory only - never for accuracy. The shape defaults to
ML-20M's: 138,493 users, 26,744 items, 20,000,263 ratings. Stages, each timed with its own
peak RSS (`pakd.memory.stage`):

  load      the CSV through pakd's table loader (`pakd.data.generic.load_table`)
  split     the seeded user_ratio split
  encode    IDs to indices, parts to tensors
  epoch     one training epoch of the default student on the labels (ranking: a sampled
            softmax over 4 popularity-drawn negatives, --ranking-loss; the full softmax
            over 26,744 items took 0.80 s per 2,048-rating step on 2 cores, 1.7 h an epoch:
            full_softmax_epoch_stopped.txt in the results)
  evaluate  full-catalogue top-10 metrics of that student for every test user, in user
            chunks sized by --max-memory-gb

::

    .venv/bin/python benchmarks/scale.py --out benchmarks/results/<dir>
    .venv/bin/python benchmarks/scale.py --scale 0.05 --out /tmp/scale   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ML20M = {"users": 138_493, "items": 26_744, "ratings": 20_000_263}
# share of each half star in the synthetic ratings (0.5 ... 5.0)
STARS = np.arange(1, 11) / 2
STAR_SHARE = np.array([1.2, 3.4, 1.4, 7.2, 4.4, 21.4, 10.9, 27.7, 7.7, 14.7])


def _counts(users: int, items: int, ratings: int, rng) -> "np.ndarray":
    """Ratings per user summing to exactly ``ratings``: at least 20 each, the rest by a
    log-normal activity, none above half the catalogue (a capped user's surplus goes to the
    others in proportion to their activity)."""
    cap = items // 2
    if not 20 * users <= ratings <= cap * users:
        raise ValueError(f"{ratings} ratings cannot give {users} users 20 to {cap} each")
    act = rng.lognormal(0.0, 1.1, users)
    k = np.full(users, 20, dtype=np.int64)
    while (left := ratings - int(k.sum())) > 0:
        room = k < cap
        share = np.where(room, act, 0.0)
        add = np.minimum(np.floor(share / share.sum() * left).astype(np.int64), cap - k)
        if add.sum() == 0:                           # less than one per user left
            top = np.argsort(-share, kind="stable")[:left]
            add[top] = 1
        k += add
    return k


def _distinct_items(k, items: int, pop, rng):
    """(user, item) rows, ``k[u]`` distinct items for user u drawn by ``pop``: each round
    draws a few more than each short user still needs and keeps the first distinct ones
    (only the short users' rows are redone)."""
    done_u, done_i = [], []
    user = np.empty(0, np.int64)
    item = np.empty(0, np.int64)
    short = np.arange(len(k))
    for _ in range(1000):
        have = np.bincount(user, minlength=len(k))
        full = have[short] >= k[short]
        done = np.isin(user, short[full])
        done_u.append(user[done])
        done_i.append(item[done])
        user, item, short = user[~done], item[~done], short[~full]
        if not len(short):
            break
        need = k[short] - have[short]
        new_u = np.repeat(short, (need * 1.2 + 10).astype(np.int64))
        u = np.concatenate([user, new_u])
        i = np.concatenate([item, rng.choice(items, size=len(new_u), p=pop)])
        _, first = np.unique(u * items + i, return_index=True)
        first.sort()                                 # kept rows first, then in draw order
        u, i = u[first], i[first]
        order = np.argsort(u, kind="stable")
        u, i = u[order], i[order]
        rank = np.arange(len(u)) - np.searchsorted(u, u)
        keep = rank < k[u]
        user, item = u[keep], i[keep]
    else:
        raise RuntimeError("could not draw enough distinct items per user")
    user, item = np.concatenate(done_u), np.concatenate(done_i)
    order = np.argsort(user, kind="stable")
    return user[order], item[order]


def synthesize(users: int, items: int, ratings: int, seed: int, stars=STARS,
               star_share=STAR_SHARE) -> "np.ndarray":
    """(user, item, rating, timestamp) columns of exactly ``ratings`` rows: every user
    20 to items/2 distinct items, items by a power-law popularity, ratings drawn from
    ``stars`` in the shares ``star_share``."""
    rng = np.random.default_rng(seed)
    k = _counts(users, items, ratings, rng)
    pop = 1.0 / (np.arange(items) + 30.0) ** 1.05
    pop = rng.permutation(pop / pop.sum())
    user, item = _distinct_items(k, items, pop, rng)
    rating = rng.choice(stars, size=len(user), p=star_share / star_share.sum())
    ts = rng.integers(789_652_009, 1_427_784_002, size=len(user))
    return user + 1, item + 1, rating, ts


def write_csv(path: Path, cols) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    user, item, rating, ts = cols
    table = pa.table({"userId": user, "movieId": item, "rating": rating, "timestamp": ts})
    pcsv.write_csv(table, path)


def student_epoch(cfg, enc, *, ranking_loss: str, seed: int, quiet: bool,
                  rating_mean: float | None = None):
    """(model, arch, fit result): the default student trained for one epoch on the labels,
    its ranking by ``ranking_loss`` over popularity-drawn negatives."""
    from pakd.models import build
    from pakd.recipes.distill import student_arch, student_tables
    from pakd.train import fit
    arch = student_arch(cfg, enc)
    mean = float(enc.parts["train"].rating.mean()) if rating_mean is None else rating_mean
    model = build("lightweight_model", enc.schema, arch, tables=student_tables(enc, arch),
                  rating_mean=mean)
    from pakd.config.sections import FitSettings
    f = cfg.distill
    settings = FitSettings(epochs=1, batch_size=f.batch_size, lr=f.lr,
                           weight_decay=f.weight_decay, l2=f.l2, negatives=f.negatives,
                           ranking_loss=ranking_loss, patience=1, monitor="loss",
                           negative_sampling="popularity")
    res = fit(model, enc, settings, seed=seed, quiet=quiet)
    return model, arch, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of ML-20M's users, items and ratings")
    ap.add_argument("--max-memory-gb", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ranking-loss", choices=["softmax", "full"], default="softmax")
    ap.add_argument("--data", type=Path, default=Path("/tmp/pakd-scale"),
                    help="where the synthetic CSV is written (reused when present)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from pakd.config import build_config
    from pakd.data.encoding import encode
    from pakd.data.generic import load_table
    from pakd.data.splits import make_split
    from pakd.evaluate import ranking_metrics
    from pakd.memory import peak_mb, stage, user_chunk

    shape = {k: max(100, int(v * args.scale)) for k, v in ML20M.items()}
    args.data.mkdir(parents=True, exist_ok=True)
    csv = args.data / (f"synthetic_{shape['users']}x{shape['items']}_{shape['ratings']}"
                       f"_seed{args.seed}.csv")
    gen_seconds = None                      # None: the CSV of an earlier run was reused
    if not csv.is_file():
        t0 = time.perf_counter()
        tmp = csv.with_suffix(".tmp")
        write_csv(tmp, synthesize(**shape, seed=args.seed))
        tmp.replace(csv)
        gen_seconds = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    cfg = build_config(overrides={"seed": args.seed})
    st: dict = {}
    with stage(st, "load"):
        ds = load_table(csv, columns={"user": "userId", "item": "movieId", "rating": "rating",
                                      "timestamp": "timestamp"}, rating_scale=(0.5, 5.0))
    with stage(st, "split"):
        split = make_split(ds.ratings, seed=args.seed)
    with stage(st, "encode"):
        enc = encode(ds, split)
    del ds, split
    with stage(st, "epoch"):
        model, arch, res = student_epoch(cfg, enc, ranking_loss=args.ranking_loss,
                                         seed=args.seed, quiet=False)
    chunk = user_chunk(enc.n_items, args.max_memory_gb, n_users=enc.n_users)
    with stage(st, "evaluate"):
        met = ranking_metrics(model, enc, "test", ks=[10], relevant_min_rating=None,
                              chunk=chunk, quiet=False)
    out = {"synthetic": True, "note": "synthetic ratings: time and memory only, no accuracy "
           "claim", "shape": shape, "rows": {p: len(enc.parts[p]) for p in enc.parts},
           "n_users": enc.n_users, "n_items": enc.n_items, "csv_mb": csv.stat().st_size / 2**20,
           "generate_seconds": gen_seconds, "max_memory_gb": args.max_memory_gb,
           "eval_user_chunk": chunk, "student_params": model.n_params(), "student_arch": arch,
           "ranking_loss": args.ranking_loss, "batch_size": cfg.distill.batch_size,
           "epoch_train_seconds": res.history[-1].get("seconds") if res.history else None,
           "users_evaluated": met["users_evaluated"], "stages": st,
           "peak_rss_mb_any_stage": max(s["peak_rss_mb"] for s in st.values()),
           "process_peak_rss_mb": peak_mb(), "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "machine": platform.machine(), "python": sys.version.split()[0],
           "torch": torch.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("shape", "stages", "eval_user_chunk")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
