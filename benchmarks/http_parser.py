"""uvicorn's two HTTP implementations under `pakd serve` with live updates: h11 (pure
Python) against httptools (C), alternating, on loopback.

Each round starts the service once per implementation (fresh state directory) and
measures /recommend with one client and with ``--clients`` clients, alone and while one
more streams rating updates (`live_updates.readers_with`), plus the server's CPU time per
/recommend (utime + stime of the process from /proc, over the 32-client phase alone).

    .venv/bin/python benchmarks/http_parser.py --model RUN/models/students/NAME \\
        --out benchmarks/results/<date>_live [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from live_updates import free_port, readers_with, start  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(model: str, http: str, clients: int, seconds: float, users, items) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        state, port = Path(tmp) / "state", free_port()
        proc, _ = start(model, state, port, 1, http=http)
        token = (state / "token").read_text().strip()
        try:
            asyncio.run(readers_with(port, token, users, items, 4, 1.0, "alone"))   # warm-up
            out = {"http": http}
            out["one_client"] = asyncio.run(readers_with(port, token, users, items, 1,
                                                         seconds, "alone"))
            c0 = cpu_seconds(proc.pid)
            alone = asyncio.run(readers_with(port, token, users, items, clients, seconds,
                                             "alone"))
            alone["server_cpu_ms_per_request"] = (
                1e3 * (cpu_seconds(proc.pid) - c0) / max(1, alone["recommend_requests"]))
            out["alone"] = alone
            out["under_updates"] = asyncio.run(readers_with(port, token, users, items, clients,
                                                            seconds, "updates"))
        finally:
            proc.kill()
            proc.wait()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from pakd.deploy.deployable import load_deployable
    dep = load_deployable(args.model)
    result = {"model": args.model, "clients": args.clients, "seconds": args.seconds,
              "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": []}
    for r in range(args.rounds):
        order = ("h11", "httptools") if r % 2 == 0 else ("httptools", "h11")
        result["rounds"].append([one(args.model, h, args.clients, args.seconds, dep.user_ids,
                                     dep.item_ids) for h in order])
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http_parser.json").write_text(json.dumps(result, indent=2) + "\n")
    for rnd in result["rounds"]:
        for m in rnd:
            print(f"{m['http']:>9}: cpu {m['alone']['server_cpu_ms_per_request']:.3f} ms/req; "
                  f"1 client p99 {m['one_client']['recommend_p99_ms']:.1f} ms; {args.clients} "
                  f"alone p50/p99 {m['alone']['recommend_p50_ms']:.1f}/"
                  f"{m['alone']['recommend_p99_ms']:.1f} ms ({m['alone']['recommend_qps']:.0f}/s);"
                  f" with updates p99 {m['under_updates']['recommend_p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
