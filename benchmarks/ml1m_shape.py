"""The whole `pakd run --dataset ml-1m` on a synthetic table of ML-1M's shape: time and
peak memory per stage (issue 13's target: the run within 60 min and 6 GB on 2 cores).

SYNTHETIC DATA: ML-1M itself cannot be downloaded on the machine this was written on, so
the three ``.dat`` files are drawn at random in ML-1M's documented format and shape (6,040
users with at least 20 ratings each, 3,706 rated movies, 1,000,209 whole-star ratings;
gender, age bucket, occupation and zip code per user; title with year and genres per
movie; items by power-law popularity, `benchmarks/scale.synthesize`). The ratings carry no
taste, so every accuracy figure of this run is noise: the figures kept are time and memory
only. The run uses the default profile fitted to the split's size
(`pakd.config.profiles.for_data`), exactly as a user's ``pakd run --dataset ml-1m`` would.

::

    .venv/bin/python benchmarks/ml1m_shape.py --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import synthesize  # noqa: E402

from pakd.results import RunTimings, load_result  # noqa: E402

ML1M = {"users": 6_040, "items": 3_706, "ratings": 1_000_209}
STARS = np.arange(1, 6, dtype=float)
# approximate whole-star shares of ML-1M (only the draw's shape; no accuracy claim)
STAR_SHARE = np.array([5.6, 10.8, 26.1, 34.9, 22.6])
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
AGES = (1, 18, 25, 35, 45, 50, 56)


def write_ml1m_shape(folder: Path, seed: int) -> dict:
    """ratings.dat, users.dat, movies.dat in ML-1M's format; returns the shape written."""
    rng = np.random.default_rng(seed + 1)
    user, item, rating, ts = synthesize(**ML1M, seed=seed, stars=STARS, star_share=STAR_SHARE)
    folder.mkdir(parents=True, exist_ok=True)
    lines = (f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in zip(user, item, rating, ts))
    (folder / "ratings.dat").write_text("".join(lines), encoding="latin-1")
    users = [f"{u}::{rng.choice(['F', 'M'])}::{rng.choice(AGES)}::{rng.integers(0, 21)}::"
             f"{rng.integers(0, 100000):05d}\n" for u in range(1, ML1M["users"] + 1)]
    (folder / "users.dat").write_text("".join(users), encoding="latin-1")
    movies = []
    for m in range(1, ML1M["items"] + 1):
        g = rng.choice(len(GENRES), size=rng.integers(1, 4), replace=False)
        movies.append(f"{m}::Synthetic movie {m} ({rng.integers(1919, 2001)})::"
                      f"{'|'.join(GENRES[j] for j in sorted(g))}\n")
    (folder / "movies.dat").write_text("".join(movies), encoding="latin-1")
    return {"ratings": len(user), "users": int(len(np.unique(user))),
            "items": int(len(np.unique(item)))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path("/tmp/pakd-ml1m-shape"),
                    help="where the synthetic ml-1m folder is written (drawn anew each time, "
                         "a few seconds)")
    ap.add_argument("--run", type=Path, default=Path("/tmp/pakd-ml1m-shape-run"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    folder = args.data / "ml-1m"
    shape = write_ml1m_shape(folder, args.seed)
    if args.run.exists():
        shutil.rmtree(args.run)
    cmd = [sys.executable, "-m", "pakd", "run", "--dataset", "ml-1m", "--data-dir",
           str(folder), "--out", str(args.run), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    wall = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("timings.json", "run.yaml", "pakd.log", "split.json"):
        if (args.run / name).is_file():
            shutil.copy(args.run / name, args.out / name)
    timings = load_result(args.run / "timings.json", RunTimings).model_dump(exclude_unset=True) \
        if (args.run / "timings.json").is_file() else {}
    import torch
    out = {"synthetic": True, "note": "synthetic ML-1M-shaped ratings without taste: time "
           "and memory only, no accuracy claim", "shape_written": shape, "command": cmd,
           "returncode": proc.returncode, "wall_seconds": wall, "stages": timings,
           "peak_rss_mb_any_stage": max(timings.get("peak_rss_mb", {"-": 0}).values()),
           "cpus": os.cpu_count(), "machine": platform.machine(),
           "python": sys.version.split()[0], "torch": torch.__version__}
    (args.out / "ml1m_shape.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("returncode", "wall_seconds",
                                          "peak_rss_mb_any_stage")}, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
