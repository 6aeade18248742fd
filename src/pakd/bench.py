"""Speed, memory and size: the one place pakd measures them.

- throughput: (user, item) rows per second through ``forward`` (rating and ranking logit)
  in batches of ``batch`` rows, after warm-up;
- latency: milliseconds to score one user's whole catalogue and take the top 10, repeated
  for different users within a time budget (at least 10 repetitions, after warm-up); p50
  and p99 are reported;
- speed-ups: a teacher and its students are measured interleaved in one process - every
  model once per round, the order rotating between rounds - so a change of machine load
  during the measurement hits them alike; each speed-up is the median over rounds of the
  per-round ratio, reported with its spread (min and max over rounds), beside the machine's
  load average before and after;
- peak_rss_mb: peak resident memory of a fresh inference process that loads one model and
  runs both measurements once (``python -m pakd.bench --memory``), with the memory before
  loading beside it;
- size_bytes: the saved weights on disk.
Torch threads are fixed before measuring and recorded with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .models.base import RecModel


@torch.inference_mode()
def throughput(model: RecModel, n_users: int, n_items: int, batch: int = 4096,
               seconds: float = 2.0, seed: int = 0, min_reps: int = 3, warmup: int = 2) -> float:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, n_users, (batch,), generator=g)
    i = torch.randint(0, n_items, (batch,), generator=g)
    for _ in range(warmup):
        model(u, i)
    n, t0 = 0, time.perf_counter()
    while True:
        model(u, i)
        n += 1
        el = time.perf_counter() - t0
        if (el >= seconds and n >= min_reps) or n >= 10_000:
            return n * batch / el


@torch.inference_mode()
def latency_samples(model: RecModel, n_users: int, k: int = 10, seconds: float = 3.0,
                    min_reps: int = 10, max_reps: int = 1000, seed: int = 0,
                    warmup: int = 3) -> np.ndarray:
    """Milliseconds of single-user full-catalogue top-k queries."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (max_reps + 3,), generator=g)
    k = min(k, model.schema.n_items)
    for w in range(warmup):
        torch.topk(model.score_all(users[w:w + 1]), k)
    times = []
    t_end = time.perf_counter() + seconds
    for r in range(max_reps):
        t0 = time.perf_counter()
        torch.topk(model.score_all(users[3 + r:4 + r]), k)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= min_reps and time.perf_counter() > t_end:
            break
    return np.array(times)


def _latency(a: np.ndarray) -> dict:
    return {"latency_ms_p50": float(np.percentile(a, 50)),
            "latency_ms_p99": float(np.percentile(a, 99)), "latency_reps": int(len(a))}


def measure(model: RecModel, n_users: int, n_items: int, *, batch: int = 4096,
            seconds: float = 3.0) -> dict:
    """Throughput and latency of one model, alone."""
    return {"throughput_rows_per_s": throughput(model, n_users, n_items, batch, seconds / 2),
            **_latency(latency_samples(model, n_users, seconds=seconds)),
            "threads": torch.get_num_threads(), "bench_batch": batch}


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def interleaved(models: dict[str, RecModel], *, batch: int, seconds: float, rounds: int,
                reference: str | None = None, progress=None) -> dict:
    """Measure every model once per round, in rotating order.

    Each model gets ``seconds`` per round (half throughput, half latency; at least 10 latency
    queries over all rounds). Returns per model
    the median throughput and latency over all rounds, and - against ``reference`` (say the
    teacher) - the median and spread of the per-round speed-ups, plus the load averages.
    """
    names = list(models)
    ref = reference or names[0]
    thr: dict[str, list[float]] = {n: [] for n in names}
    lat: dict[str, list[np.ndarray]] = {n: [] for n in names}
    load_before = _load_avg()
    t0 = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            m = models[n]
            nu, ni = m.schema.n_users, m.schema.n_items
            warm = 1 if r else 3          # the first round warms every model up
            thr[n].append(throughput(m, nu, ni, batch, seconds / 2, seed=r, warmup=warm))
            lat[n].append(latency_samples(m, nu, seconds=seconds / 2, seed=r, warmup=warm,
                                          min_reps=max(3, -(-10 // rounds))))
            if progress is not None:
                progress.update(1)
    out = {}
    for n in names:
        p50 = [float(np.percentile(a, 50)) for a in lat[n]]
        row = {"throughput_rows_per_s": float(np.median(thr[n])),
               **_latency(np.concatenate(lat[n])), "latency_ms_p50": float(np.median(p50)),
               "threads": torch.get_num_threads(), "bench_batch": batch, "bench_rounds": rounds}
        if n != ref:
            sp_t = [a / b for a, b in zip(thr[n], thr[ref])]
            ref_p50 = [float(np.percentile(a, 50)) for a in lat[ref]]
            sp_l = [b / a for a, b in zip(p50, ref_p50)]
            row.update(speedup_throughput=float(np.median(sp_t)),
                       speedup_throughput_range=[float(min(sp_t)), float(max(sp_t))],
                       speedup_latency=float(np.median(sp_l)),
                       speedup_latency_range=[float(min(sp_l)), float(max(sp_l))])
        out[n] = row
    return {"models": out, "reference": ref, "rounds": rounds,
            "load_average_before": load_before, "load_average_after": _load_avg(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - t0}


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


def _load_target(target: str, run: str | None) -> RecModel:
    from .models import load
    if target == "ensemble":
        from .rundir import RunDir
        if not run:
            raise SystemExit("the ensemble needs --run")
        return RunDir(run).load_ensemble()
    return load(target)[0]


def memory_in_subprocess(target: str, *, run_dir: str | None = None, threads: int,
                         batch: int) -> dict:
    """Peak RSS of a fresh process that loads ``target`` and runs one batch and one query."""
    cmd = [sys.executable, "-m", "pakd.bench", "--memory", "--target", target, "--threads",
           str(threads), "--batch", str(batch)]
    if run_dir:
        cmd += ["--run", str(run_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe of {target} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory_of(targets: list[str], *, run_dir: str | None, threads: int, batch: int,
              parallel: int = 4) -> list[dict]:
    """`memory_in_subprocess` for each target, ``parallel`` probes at a time (memory is not a
    timing, so probes may share the machine; most of a probe's time is importing torch)."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
        return list(ex.map(lambda t: memory_in_subprocess(t, run_dir=run_dir, threads=threads,
                                                          batch=batch), targets))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pakd.bench",
                                 description="measure one saved model in this process")
    ap.add_argument("--target", required=True,
                    help="path stem of a saved model, or 'ensemble' (needs --run)")
    ap.add_argument("--run", help="run directory (for the ensemble teacher)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--memory", action="store_true",
                    help="only peak memory: load, one batch, one top-10 query")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    before = _status_mb("VmRSS")
    model = _load_target(a.target, a.run)
    loaded = _status_mb("VmRSS")
    nu, ni = model.schema.n_users, model.schema.n_items
    if a.memory:
        with torch.inference_mode():
            g = torch.Generator().manual_seed(0)
            model(torch.randint(0, nu, (a.batch,), generator=g),
                  torch.randint(0, ni, (a.batch,), generator=g))
            torch.topk(model.score_all(torch.tensor([0])), 10)
        out = {}
    else:
        out = measure(model, nu, ni, batch=a.batch, seconds=a.seconds)
    out.update(peak_rss_mb=_status_mb("VmHWM"), rss_before_load_mb=before,
               rss_after_load_mb=loaded)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
