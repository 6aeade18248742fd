"""One training epoch of a member in one process against N processes under torchrun (issue 13).

Copies a finished run's split into fresh run directories, trains ``--member`` for one epoch
with ``pakd train`` (1 process, all cores) and with ``pakd train --nproc N`` (torchrun, one
thread each), and writes the epoch time, the all-reduced bytes per step and the test
metrics of each, plus the arithmetic for N machines::

    .venv/bin/python benchmarks/torchrun_epoch.py --run runs/default --member xdeepfm \\
        --nproc 2 --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def train(src: Path, dest: Path, member: str, nproc: int, epochs: int) -> dict:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in ("split.csv", "split.json", "run.yaml"):
        shutil.copy2(src / f, dest / f)
    cmd = [sys.executable, "-m", "pakd", "train", "--run", str(dest), "--models", member,
           f"--{member}-epochs", str(epochs), f"--{member}-patience", str(epochs + 1), "-q"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    meta = json.loads((dest / "teachers" / f"{member}.json").read_text())
    hist = meta["fit"]["history"]
    return {"processes": nproc, "command_seconds": wall,
            "epoch_seconds": [h["seconds"] for h in hist],
            "allreduce_bytes_per_step": hist[0].get("allreduce_bytes_per_step", 0),
            "params": meta["params"], "test": {k: meta["test"][k] for k in ("rmse", "ndcg@10")},
            "valid_loss": [h["valid_loss"] for h in hist]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a run with a split")
    ap.add_argument("--member", default="xdeepfm", choices=["svd", "xdeepfm", "autoint"])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "runs"
    one = train(args.run, work / "one", args.member, 1, args.epochs)
    many = train(args.run, work / f"n{args.nproc}", args.member, args.nproc, args.epochs)
    shutil.rmtree(work)
    steps = -(-int(json.loads((args.run / "split.json").read_text())["rows"]["train"])
              // _batch(args.run, args.member))
    b = many["allreduce_bytes_per_step"]
    out = {"member": args.member, "one": one, "many": many, "steps_per_epoch": steps,
           "speedup": one["epoch_seconds"][0] / many["epoch_seconds"][0],
           "arithmetic": (
               f"Each step all-reduces {b / 1e6:.2f} MB (every gradient, dense, float32, plus "
               f"one flag per parameter tensor). A ring all-reduce over N processes sends and "
               f"receives 2 (N-1)/N of it per process: {2 * b / 1e6:.2f} MB per step at "
               f"large N, {2 * b * steps / 1e6:.0f} MB per epoch ({steps} steps). On a 10 "
               f"Gbit/s network (1.25 GB/s) that is {2 * b / 1.25e9 * 1e3:.1f} ms per step, "
               f"{2 * b * steps / 1.25e9:.2f} s per epoch, against "
               f"{one['epoch_seconds'][0]:.1f} s of one-process compute per epoch here, so N "
               "machines divide the compute by about N until N reaches the ratio of the two.")}
    (args.out / f"torchrun_{args.member}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


def _batch(run: Path, member: str) -> int:
    import yaml
    return int(yaml.safe_load((run / "run.yaml").read_text())[member]["batch_size"])


if __name__ == "__main__":
    sys.exit(main())
