"""Bounded load test of `pakd serve` on loopback (127.0.0.1 only).

For each configuration (the best student in PyTorch, ONNX fp32 and ONNX int8, and the
teacher ensemble) it starts `pakd serve` on an ephemeral port, waits for /healthz, then
sends a fixed number of GET /recommend?user=...&k=10 requests (random users, fixed seed) at
each concurrency level, with a time cap per level; it records QPS, latency p50/p99, errors,
and the server's resident memory after 1,000 and after 10,000 requests. Every server is
stopped at the end, whatever happens. The servers run with ``--rate-limit 0``: every
client here is one loopback address, which the default per-client limit would throttle.

``--healthz-under-teacher`` (issue 34) measures something else: a server holding the
student and the teacher ensemble, 8 clients asking the teacher for top-10s as fast as it
answers, and one probe asking /healthz every 20 ms; it reports the probe's p50/p99/max
(the target: p99 <= 10 ms, so liveness stays fast while the teacher is busy) and the
teacher's throughput and errors.

    .venv/bin/python benchmarks/serve_load.py --run runs/default \
        --out benchmarks/results/2026-11-25_serve
    .venv/bin/python benchmarks/serve_load.py --run runs/q --healthz-under-teacher \
        --out benchmarks/results/<date>_hostile

Client and server share the machine's cores, so the figures are a floor for the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(args: list[str], port: int, timeout: float = 300.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pakd.cli", "serve", "--port", str(port), "-q",
           "--rate-limit", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not answer /healthz in time")


class Conn:
    """One keep-alive HTTP/1.1 connection spoken by hand: a Python HTTP client library
    spends more CPU per request than the server, on the same two cores."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        length = next(int(h.split(":", 1)[1]) for h in lines[1:]
                      if h.lower().startswith("content-length:"))
        return code, await self.reader.readexactly(length)

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def load(port: int, users: list, n: int, concurrency: int, cap_s: float,
               pid: int, rss_at: tuple[int, ...] = ()) -> dict:
    """n requests from ``concurrency`` clients (or fewer when cap_s runs out)."""
    lat, codes, rss = [], {}, {}
    counter = {"sent": 0, "done": 0}
    t0 = time.perf_counter()

    async def worker():
        conn = Conn(port)
        try:
            while counter["sent"] < n and time.perf_counter() - t0 < cap_s:
                k = counter["sent"]
                counter["sent"] += 1
                t = time.perf_counter()
                try:
                    code, body = await conn.get(f"/recommend?user={users[k % len(users)]}&k=10")
                    if code == 200 and len(json.loads(body)["items"]) != 10:
                        code = -1
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    code = 0
                    conn.close()
                    conn = Conn(port)
                lat.append(time.perf_counter() - t)
                codes[code] = codes.get(code, 0) + 1
                counter["done"] += 1
                if counter["done"] in rss_at:
                    rss[counter["done"]] = rss_mb(pid)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {"concurrency": concurrency, "requests": len(lat), "seconds": wall,
            "qps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "codes": {str(c): v for c, v in codes.items()},
            "errors": sum(v for c, v in codes.items() if c != 200),
            "capped": len(lat) < n, "rss_mb": {str(k): v for k, v in rss.items()}}


async def healthz_under_teacher(port: int, users: list, seconds: float, clients: int,
                                pid: int) -> dict:
    """``clients`` connections asking the teacher for top-10s for ``seconds`` while one
    more asks /healthz every 20 ms."""
    stop = time.perf_counter() + seconds
    probe, teacher, codes = [], [], {}

    async def teach(w: int):
        conn, k = Conn(port), w
        try:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    code, _ = await conn.get(f"/recommend?user={users[k % len(users)]}&k=10"
                                             "&model=teacher")
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    code = 0
                    conn.close()
                    conn = Conn(port)
                teacher.append(time.perf_counter() - t)
                codes[code] = codes.get(code, 0) + 1
                k += clients
        finally:
            conn.close()

    async def health():
        conn = Conn(port)
        try:
            await asyncio.sleep(1.0)             # the teacher clients are busy by then
            while time.perf_counter() < stop:
                t = time.perf_counter()
                code, _ = await conn.get("/healthz")
                probe.append(time.perf_counter() - t)
                codes[f"healthz {code}"] = codes.get(f"healthz {code}", 0) + 1
                await asyncio.sleep(0.02)
        finally:
            conn.close()

    await asyncio.gather(health(), *(teach(w) for w in range(clients)))
    h, tl = np.array(probe) * 1e3, np.array(teacher) * 1e3
    return {"clients": clients, "seconds": seconds, "healthz_probes": len(h),
            "healthz_p50_ms": float(np.percentile(h, 50)),
            "healthz_p99_ms": float(np.percentile(h, 99)), "healthz_max_ms": float(h.max()),
            "teacher_requests": len(tl), "teacher_qps": len(tl) / seconds,
            "teacher_p50_ms": float(np.percentile(tl, 50)),
            "teacher_p99_ms": float(np.percentile(tl, 99)),
            "codes": {str(c): v for c, v in codes.items()},
            "errors": sum(v for c, v in codes.items() if c not in (200, "healthz 200")),
            "rss_mb": rss_mb(pid)}


def main_healthz(args) -> int:
    run = Path(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = str(run / "models" / "saved" / "best_student_model")
    catalog = json.loads((Path(model + ".catalog.json")).read_text())
    users = list(np.random.default_rng(0).choice(catalog["user_ids"], 5000).tolist())
    port = free_port()
    proc = start(["--model", model, "--teacher-model", str(run)], port)
    try:
        asyncio.run(healthz_under_teacher(port, users, 3.0, 2, proc.pid))      # warm-up
        r = asyncio.run(healthz_under_teacher(port, users, args.teacher_seconds, 8, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    r |= {"run": str(run), "cpu_count": os.cpu_count()}
    (out / "healthz_under_teacher.json").write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r, indent=2))
    return 0 if r["errors"] == 0 else 1


def main() -> int:
    try:                  # the client's own loop costs less CPU on uvloop, when installed
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/default")
    p.add_argument("--out", required=True)
    p.add_argument("--requests", type=int, default=10000, help="requests per level")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--cap-seconds", type=float, default=90.0, help="time cap per level")
    p.add_argument("--teacher-requests", type=int, default=1000)
    p.add_argument("--only", help="comma list of configurations to run")
    p.add_argument("--healthz-under-teacher", action="store_true",
                   help="only the /healthz-while-8-clients-hit-the-teacher measurement")
    p.add_argument("--teacher-seconds", type=float, default=30.0,
                   help="length of that measurement")
    args = p.parse_args()
    if args.healthz_under_teacher:
        return main_healthz(args)
    run = Path(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_dir = out / "onnx"
    model = str(run / "models" / "saved" / "best_student_model")
    configs = {
        "student_pytorch": ["--model", model],
        "student_onnx_fp32": ["--model", model, "--onnx", str(onnx_dir)],
        "student_onnx_int8": ["--model", model, "--onnx", str(onnx_dir), "--int8"],
        "teacher_ensemble": ["--model", str(run / "teachers" / "ensemble")],
    }
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    if any("onnx" in k for k in configs) and not (onnx_dir / "topk.int8.onnx").is_file():
        subprocess.run([sys.executable, "-m", "pakd.cli", "export", "--model", model, "--out",
                        str(onnx_dir), "--int8", "-q"], check=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    catalog = json.loads((Path(model + ".catalog.json")).read_text())
    users = list(np.random.default_rng(0).choice(catalog["user_ids"], 20000).tolist())
    results = {"run": str(run), "cpu_count": os.cpu_count(), "levels": {}}
    for name, cargs in configs.items():
        port = free_port()
        proc = start(cargs, port)
        try:
            rss0 = rss_mb(proc.pid)
            n = args.teacher_requests if name.startswith("teacher") else args.requests
            # warm-up, not measured
            asyncio.run(load(port, users[::-1], 200 if n > 1000 else 20, 4, 30, proc.pid))
            rows = []
            for c in levels:
                r = asyncio.run(load(port, users, n, c, args.cap_seconds, proc.pid,
                                     rss_at=(1000, 10000)))
                r["rss_start_mb"] = rss0
                rows.append(r)
                print(f"{name:>20} c={c:>3}: {r['qps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}  n={r['requests']}  "
                      f"rss {r['rss_mb']}", flush=True)
            results["levels"][name] = rows
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    (out / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| configuration | clients | requests | req/s | p50 ms | p99 ms | errors | "
             "RSS MB at 1k → 10k |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, rows in results["levels"].items():
        for r in rows:
            rss = r["rss_mb"]
            grow = (f"{rss['1000']:.1f} → {rss['10000']:.1f} "
                    f"({(rss['10000'] / rss['1000'] - 1) * 100:+.1f}%)"
                    if "1000" in rss and "10000" in rss else
                    (f"{rss['1000']:.1f} at 1k" if "1000" in rss else ""))
            lines.append(f"| {name} | {r['concurrency']} | {r['requests']:,}"
                         f"{' (capped)' if r['capped'] else ''} | {r['qps']:.0f} | "
                         f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {grow} |")
    (out / "serve_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
