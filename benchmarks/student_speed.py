"""Measure a finished run's students against its teacher again, with today's code: the
interleaved throughput and one-user top-10 latency the sweep records (`pakd.bench`), so a
change that only makes scoring faster can be measured without retraining anything.

    .venv/bin/python benchmarks/student_speed.py --run runs/seeds3/seed-0 \
        --methods fisher_kd,dense_kd --out benchmarks/results/<folder>/speed_seed0.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pakd.atomic import atomic_write_text
from pakd.bench import interleaved
from pakd.models import load
from pakd.rundir import RunDir
from pakd.runtime import environment


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--methods", default="fisher_kd,dense_kd",
                   help="students whose saved file names start with these")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--seconds", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rd = RunDir(a.run)
    stems = sorted({f.with_suffix("") for f in (rd.root / "models" / "students").glob(
        "*.safetensors") if f.name.startswith(tuple(a.methods.split(",")))})
    if not stems:
        print(f"no saved students of {a.methods} in {rd.root}/models/students", file=sys.stderr)
        return 2
    models = {"teacher": rd.load_ensemble(), **{s.name: load(s)[0] for s in stems}}
    speed = interleaved(models, batch=a.batch, seconds=a.seconds, rounds=a.rounds,
                        reference="teacher")
    out = {"run": str(rd.root), "threads": a.threads, "batch": a.batch, "rounds": a.rounds,
           "environment": environment(), **speed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
    for name, row in speed["models"].items():
        print(f"{name:28s} throughput ×{row.get('speedup_throughput', 1.0):7.1f}  "
              f"latency ×{row.get('speedup_latency', 1.0):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
