"""Kill a run with SIGKILL at several points, resume it, and compare (issue 15, item 1).

One uninterrupted ``pakd run --profile quick`` is the reference. Then, for each kill point
(a line pakd writes to RUN/pakd.log), a fresh run is started, killed with SIGKILL - the
whole process group, sweep workers included - as soon as the line appears, and resumed
with ``--resume``. Every metrics file of the resumed run must equal the reference's, timings
and speed aside. A second uninterrupted run checks that reruns are identical at all::

    .venv/bin/python benchmarks/kill_resume.py --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAKD = [sys.executable, "-c", "import sys; from pakd.cli import main; sys.exit(main())"]

# (name, regular expression on RUN/pakd.log, how many matches before the kill)
KILL_POINTS = [
    ("teachers: xDeepFM training", r"xdeepfm epoch 1:", 1),
    ("teachers: AutoInt training starts", r"training autoint", 1),
    ("Fisher stage", r"stage ensemble:", 1),
    ("inside the sweep (first student done)", r"ratio \d\.\d\d: params", 1),
    ("inside the sweep (three students done)", r"ratio \d\.\d\d: params", 3),
]
# the files whose figures must match, relative to the run
METRIC_FILES = ["split.json", "teachers.json", "analysis_results/*.json"]
# keys that hold timings, speed or memory: they differ between any two runs
VOLATILE = re.compile(r"second|throughput|latency|speedup|rss|load_avg|bench|elapsed|time")


def strip(obj):
    """``obj`` without timing, speed and memory entries (and the run's own paths)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in one")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []                       # an undefined figure (e.g. a constant ranking) in both
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def figures(run: Path) -> dict:
    out = {}
    for pattern in METRIC_FILES:
        for p in sorted(run.glob(pattern)):
            text = p.read_text().replace(str(run), "RUN")
            out[str(p.relative_to(run))] = strip(json.loads(text))
    return out


def pakd(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(PAKD + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def run_to_end(run: Path, extra: list[str]) -> float:
    t0 = time.perf_counter()
    p = pakd(["run", "--out", str(run), "--profile", "quick", "-q", *extra])
    _, err = p.communicate()
    if p.returncode:
        raise SystemExit(f"pakd run failed ({p.returncode}): {err[-2000:]}")
    return time.perf_counter() - t0


def kill_at(run: Path, pattern: str, count: int, timeout: float = 900) -> float:
    """Start a run and SIGKILL its process group once ``pattern`` has appeared ``count``
    times in its log; returns the seconds it ran."""
    t0 = time.perf_counter()
    p = pakd(["run", "--out", str(run), "--profile", "quick", "-q"])
    log = run / "pakd.log"
    rx = re.compile(pattern)
    while time.perf_counter() - t0 < timeout:
        if p.poll() is not None:
            raise SystemExit(f"the run ended before '{pattern}' was seen")
        if log.is_file() and len(rx.findall(log.read_text(errors="replace"))) >= count:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return time.perf_counter() - t0
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    raise SystemExit(f"'{pattern}' did not appear within {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the runs and summary")
    ap.add_argument("--keep-runs", action="store_true", help="keep the run directories")
    args = ap.parse_args()
    work = args.out / "runs"
    work.mkdir(parents=True, exist_ok=True)
    ref = work / "reference"
    summary = {"reference_seconds": run_to_end(ref, []), "points": []}
    want = figures(ref)
    again = work / "rerun"
    summary["rerun_seconds"] = run_to_end(again, [])
    summary["rerun_differences"] = [f"{f}{d}" for f in want
                                    for d in differences(want[f], figures(again).get(f))]
    for i, (name, pattern, count) in enumerate(KILL_POINTS):
        run = work / f"kill{i}"
        killed = kill_at(run, pattern, count)
        resumed = run_to_end(run, ["--resume"])
        got = figures(run)
        diffs = [f"{f}{d}" for f in want for d in differences(want[f], got.get(f))]
        row = {"point": name, "killed_after_s": round(killed, 1),
               "resume_seconds": round(resumed, 1), "equal": not diffs, "differences": diffs[:20]}
        summary["points"].append(row)
        print(json.dumps(row), flush=True)
    summary["equal"] = sum(r["equal"] for r in summary["points"])
    summary["of"] = len(summary["points"])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['equal']} of {summary['of']} resumed runs equal the reference; "
          f"rerun differences: {len(summary['rerun_differences'])}")
    if not args.keep_runs:
        import shutil
        shutil.rmtree(work)
    return 0 if summary["equal"] == summary["of"] and not summary["rerun_differences"] else 1


if __name__ == "__main__":
    sys.exit(main())
