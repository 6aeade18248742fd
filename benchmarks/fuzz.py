"""Fuzz every input reader with many generated examples (issue 15, item 5; issue 34).

Runs the properties of ``tests/test_fuzz.py`` under hypothesis's "bench" profile (random
seeds, ``--examples`` per property) and writes how many inputs each property saw and
whether any raised something other than pakd's own error. Since issue 34 the properties
also cover gzip files (bombs among them), long fields and lines, settings text with YAML
aliases, tags and deep nesting, model configs edited against their weights, weights-file
headers, and HTTP bodies, content types and query strings (a failing example there is a
response >= 500 or an error without the ``{"error": {"code", "message"}}`` shape)::

    .venv/bin/python benchmarks/fuzz.py --examples 2000 --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="examples per property")
    ap.add_argument("--out", type=Path, default=None, help="folder for summary.json")
    args = ap.parse_args()
    env = {**os.environ, "PAKD_FUZZ_PROFILE": "bench", "PAKD_FUZZ_EXAMPLES": str(args.examples)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--hypothesis-show-statistics", "-q", "tests/test_fuzz.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    per_test: dict[str, dict] = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"tests/test_fuzz.py::(\w+):", line.strip())
        if m:
            current = m.group(1)
            per_test[current] = {"passing": 0, "failing": 0, "invalid": 0}
            continue
        m = re.search(r"- (\d+) passing, (\d+) failing, and (\d+) invalid", line)
        if m and current:
            c = per_test[current]
            c["passing"] += int(m.group(1))
            c["failing"] += int(m.group(2))
            c["invalid"] += int(m.group(3))
    summary = {"examples_per_property": args.examples, "seconds": round(seconds, 1),
               "pytest_exit": proc.returncode, "properties": per_test,
               "inputs_total": sum(c["passing"] + c["failing"] for c in per_test.values()),
               "failing_total": sum(c["failing"] for c in per_test.values())}
    print(json.dumps(summary, indent=2))
    if proc.returncode:       # each failure's error and its (shrunk) failing example
        print("\n".join([ln for ln in out.splitlines() if ln.startswith("E ")][:200]
                        + out.splitlines()[-20:]), file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
