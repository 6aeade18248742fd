"""Speed, memory and size: the one place pakd measures them.

- throughput: (user, item) rows per second through ``forward`` (rating and ranking logit)
  in batches of ``batch`` rows, after warm-up;
- latency: milliseconds to score one user's whole catalogue and take the top 10, repeated
  for different users within a time budget (at least 10 repetitions, after warm-up); p50
  and p99 are reported;
- peak_rss_mb: peak resident memory of a fresh inference process that loads the model and
  runs both measurements (``python -m pakd.bench``), with the memory before loading beside it;
- size_bytes: the saved weights on disk.
Torch threads are fixed before measuring and recorded with every figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .models.base import RecModel


@torch.inference_mode()
def throughput(model: RecModel, n_users: int, n_items: int, batch: int = 4096,
               seconds: float = 2.0, seed: int = 0) -> float:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, n_users, (batch,), generator=g)
    i = torch.randint(0, n_items, (batch,), generator=g)
    for _ in range(2):
        model(u, i)
    n, t0 = 0, time.perf_counter()
    while True:
        model(u, i)
        n += 1
        el = time.perf_counter() - t0
        if (el >= seconds and n >= 3) or n >= 10_000:
            return n * batch / el


@torch.inference_mode()
def latency(model: RecModel, n_users: int, k: int = 10, seconds: float = 3.0,
            min_reps: int = 10, max_reps: int = 1000, seed: int = 0) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (max_reps + 3,), generator=g)
    for w in range(3):
        torch.topk(model.score_all(users[w:w + 1]), k)
    times = []
    t_end = time.perf_counter() + seconds
    for r in range(max_reps):
        t0 = time.perf_counter()
        torch.topk(model.score_all(users[3 + r:4 + r]), k)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= min_reps and time.perf_counter() > t_end:
            break
    a = np.array(times)
    return {"latency_ms_p50": float(np.percentile(a, 50)), "latency_ms_p99": float(np.percentile(a, 99)),
            "latency_reps": len(a)}


def measure(model: RecModel, n_users: int, n_items: int, *, batch: int = 4096,
            seconds: float = 3.0) -> dict:
    return {"throughput_rows_per_s": throughput(model, n_users, n_items, batch, seconds / 2),
            **latency(model, n_users, seconds=seconds), "threads": torch.get_num_threads(),
            "bench_batch": batch}


def _status_mb(key: str) -> float:
    """VmHWM (peak) or VmRSS (current) of this process in MB. ru_maxrss is not used: Linux
    carries the parent's peak across fork and exec, so a child would report its parent's."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if key == "VmHWM":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float("nan")


def bench_in_subprocess(target: str, *, run_dir: str | None = None, threads: int,
                        batch: int, seconds: float) -> dict:
    """Run `measure` in a fresh process, so its peak RSS is the inference process's alone."""
    cmd = [sys.executable, "-m", "pakd.bench", "--target", target, "--threads", str(threads),
           "--batch", str(batch), "--seconds", str(seconds)]
    if run_dir:
        cmd += ["--run", run_dir]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark of {target} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pakd.bench",
                                 description="measure one saved model in this process")
    ap.add_argument("--target", required=True,
                    help="path stem of a saved model, or 'ensemble' (needs --run)")
    ap.add_argument("--run", help="run directory (for the ensemble teacher)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    before = _status_mb("VmRSS")
    from .models import load
    if a.target == "ensemble":
        from .models.ensemble import load_ensemble_dir
        model = load_ensemble_dir(Path(a.run) / "teachers",
                                  lambda n: load(Path(a.run) / "teachers" / n)[0])
    else:
        model = load(a.target)[0]
    loaded = _status_mb("VmRSS")
    out = measure(model, model.schema.n_users, model.schema.n_items, batch=a.batch,
                  seconds=a.seconds)
    out.update(peak_rss_mb=_status_mb("VmHWM"), rss_before_load_mb=before,
               rss_after_load_mb=loaded)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
