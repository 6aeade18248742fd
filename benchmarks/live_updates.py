"""Live updates under load, on loopback (issue 35): `pakd serve` with an update log.

Starts `pakd serve --model M --state S` on an ephemeral port (the token made in S) and
measures, in order:

1. update latency: one client posting one rating at a time (a known or new user, a random
   item), then ten at a time; latency per request and per rating, p50/p99; then five new
   items (POST /items), each rated by 40 users one rating a request (a new item's first
   ratings place it again from its raters);
2. one connection, then ``--clients`` connections, asking /recommend as fast as they are
   answered, alone and while one more streams updates: /recommend p50/p99, update p99,
   errors;
3. reload under load: the same readers while /admin/reload is called every 0.5 s: failed
   requests (anything but 200) and reloads done;
4. kill -9 during a stream of updates (four writers, each update a fresh user's single
   rating): the server is killed mid-stream and restarted on the same state directory;
   every acknowledged update is looked up (lost = acknowledged but absent), and the
   restart's time to /healthz with the log replayed is reported beside a fresh start.

    .venv/bin/python benchmarks/live_updates.py --model RUN/models/students/NAME \
        --out benchmarks/results/<date>_live [--threads 1]

Client and server share the machine's cores: the figures are a floor for the server. The
server's torch threads (``--threads``, default 1) and the load average before and after are
recorded with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# `pakd serve` with uvicorn's HTTP implementation forced (uvicorn takes httptools when it is
# installed): only to compare the two (benchmarks/http_parser.py)
FORCED_HTTP = ("import sys, uvicorn; http = sys.argv.pop(1); init = uvicorn.Config.__init__; "
               "uvicorn.Config.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "
               "'http': http}); from pakd.cli import main; sys.exit(main())")


def start(model: str, state: Path, port: int, threads: int, timeout: float = 600.0,
          http: str = "auto") -> tuple:
    """(process, seconds to the first 200 from /healthz)."""
    cmd = [sys.executable, "-m", "pakd.cli"] if http == "auto" else \
        [sys.executable, "-c", FORCED_HTTP, http]
    cmd += ["serve", "--model", model, "--port", str(port), "--state", str(state),
            "--rate-limit", "0", "--threads", str(threads), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not answer /healthz in time")


class Conn:
    """One keep-alive HTTP/1.1 connection spoken by hand (cheaper than a client library on
    the server's two cores)."""

    def __init__(self, port: int, token: str = ""):
        self.port, self.token = port, token
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if self.token:
            head += f"Authorization: Bearer {self.token}\r\n"
        if method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        length = next(int(h.split(":", 1)[1]) for h in lines[1:]
                      if h.lower().startswith("content-length:"))
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if len(xs) else float("nan")


def rating_body(items: list, n: int, rng) -> bytes:
    return json.dumps({"ratings": [{"item": items[int(rng.integers(len(items)))],
                                    "rating": float(rng.integers(2, 11)) / 2}
                                   for _ in range(n)]}).encode()


async def update_latency(port, token, users, items, n, per_request) -> dict:
    rng = np.random.default_rng(per_request)
    conn, lat, bad = Conn(port, token), [], 0
    for k in range(n):
        user = users[int(rng.integers(len(users)))] if k % 4 else f"lat{per_request}-{k}"
        t = time.perf_counter()
        code, _ = await conn.request("POST", f"/users/{user}/ratings",
                                     rating_body(items, per_request, rng))
        lat.append(time.perf_counter() - t)
        bad += code != 200
    conn.close()
    return {"requests": n, "ratings_per_request": per_request, "errors": bad,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "per_rating_p99_ms": pct(lat, 99) / per_request}


async def new_item_latency(port, token, users, n_items, raters, features) -> dict:
    """``n_items`` new items (POST /items with ``features``), then ``raters`` distinct
    users rating each, one rating a request: while an item has few ratings, each one places
    it again from its raters and rebuilds them (the costliest update there is)."""
    rng = np.random.default_rng(7)
    conn, lat, bad = Conn(port, token), [], 0
    for k in range(n_items):
        item = f"bench-new-{k}"
        code, body = await conn.request("POST", "/items", json.dumps(
            {"item": item, "title": f"New film {k}", "features": features}).encode())
        if code != 200:
            conn.close()
            return {"skipped": f"POST /items answered {code}: {body[:200].decode()}"}
        for u in rng.choice(len(users), min(raters, len(users)), replace=False):
            t = time.perf_counter()
            code, _ = await conn.request("POST", f"/users/{users[int(u)]}/ratings", json.dumps(
                {"ratings": [{"item": item, "rating": float(rng.integers(2, 11)) / 2}]}).encode())
            lat.append(time.perf_counter() - t)
            bad += code != 200
    conn.close()
    return {"items": n_items, "raters_each": raters, "requests": len(lat), "errors": bad,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


async def readers_with(port, token, users, items, clients, seconds, side: str) -> dict:
    """``clients`` readers for ``seconds`` beside one writer (``side``: 'updates' streams
    ratings, 'reload' calls /admin/reload every 0.5 s)."""
    stop = time.perf_counter() + seconds
    rec, codes, side_lat, side_codes = [], {}, [], {}

    async def reader(w):
        conn, k = Conn(port), w
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                code, _ = await conn.request("GET", f"/recommend?user={users[k % len(users)]}"
                                                    "&k=10")
            except (OSError, asyncio.IncompleteReadError, ValueError):
                code = 0
                conn.close()
            rec.append(time.perf_counter() - t)
            codes[code] = codes.get(code, 0) + 1
            k += clients
        conn.close()

    async def writer():
        conn, rng, k = Conn(port, token), np.random.default_rng(7), 0
        while side != "alone" and time.perf_counter() < stop:
            t = time.perf_counter()
            if side == "updates":
                code, _ = await conn.request("POST", f"/users/{users[k % len(users)]}/ratings",
                                             rating_body(items, 1, rng))
            else:
                await asyncio.sleep(0.5)
                t = time.perf_counter()
                code, _ = await conn.request("POST", "/admin/reload")
            side_lat.append(time.perf_counter() - t)
            side_codes[code] = side_codes.get(code, 0) + 1
            k += 1
        conn.close()

    await asyncio.gather(writer(), *(reader(w) for w in range(clients)))
    return {"clients": clients, "seconds": seconds, "recommend_requests": len(rec),
            "recommend_qps": len(rec) / seconds, "recommend_p50_ms": pct(rec, 50),
            "recommend_p99_ms": pct(rec, 99),
            "failed": sum(v for c, v in codes.items() if c != 200)
            + sum(v for c, v in side_codes.items() if c != 200),
            side: len(side_lat), f"{side}_p50_ms": pct(side_lat, 50),
            f"{side}_p99_ms": pct(side_lat, 99),
            "codes": {str(c): v for c, v in codes.items()},
            f"{side}_codes": {str(c): v for c, v in side_codes.items()}}


async def stream_until_killed(port, token, items, proc, after_s) -> list:
    """Four writers stream fresh users' ratings; the server is killed after ``after_s``
    seconds. The acknowledged (user, item, rating)."""
    acked = []

    async def writer(w):
        conn, rng, k = Conn(port, token), np.random.default_rng(w), 0
        while True:
            user = f"kill{w}-{k}"
            item = items[int(rng.integers(len(items)))]
            body = json.dumps({"ratings": [{"item": item, "rating": 4.0}]}).encode()
            try:
                code, _ = await conn.request("POST", f"/users/{user}/ratings", body)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                return
            if code == 200:
                acked.append((user, item))
            k += 1

    async def killer():
        await asyncio.sleep(after_s)
        os.kill(proc.pid, signal.SIGKILL)

    await asyncio.gather(killer(), *(writer(w) for w in range(4)))
    return acked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--updates", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    ap.add_argument("--new-item-features", default='{"genres": "Drama|Romance", "year": 2001}',
                    help="side fields (JSON) of the new items whose first ratings are timed")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from pakd.deploy.deployable import load_deployable
    dep = load_deployable(args.model)
    users, items = dep.user_ids, dep.item_ids
    result = {"model": args.model, "users": len(users), "items": len(items),
              "threads": args.threads, "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        port = free_port()
        proc, result["fresh_start_s"] = start(args.model, state, port, args.threads)
        token = (state / "token").read_text().strip()
        try:
            asyncio.run(update_latency(port, token, users, items, 50, 1))          # warm-up
            result["update_1"] = asyncio.run(update_latency(port, token, users, items,
                                                            args.updates, 1))
            result["update_10"] = asyncio.run(update_latency(port, token, users, items,
                                                             args.updates // 5, 10))
            result["update_new_item"] = asyncio.run(new_item_latency(
                port, token, users, 5, 40, json.loads(args.new_item_features)))
            result["recommend_one_client"] = asyncio.run(readers_with(
                port, token, users, items, 1, args.seconds, "alone"))
            result["recommend_alone"] = asyncio.run(readers_with(
                port, token, users, items, args.clients, args.seconds, "alone"))
            result["recommend_under_updates"] = asyncio.run(readers_with(
                port, token, users, items, args.clients, args.seconds, "updates"))
            result["reload_under_load"] = asyncio.run(readers_with(
                port, token, users, items, args.clients, args.seconds, "reload"))
            acked = asyncio.run(stream_until_killed(port, token, items, proc, 2.0))
        finally:
            proc.kill()
            proc.wait()
        records = sum(1 for _ in open(state / "updates.log", "rb")) - 1
        port = free_port()
        proc, restart_s = start(args.model, state, port, args.threads)
        try:
            lost = 0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                for user, item in acked:
                    r = c.get(f"/users/{user}/ratings")
                    if r.status_code != 200 or item not in [x["item"] for x in
                                                            r.json()["ratings"]]:
                        lost += 1
        finally:
            proc.terminate()
            proc.wait()
        result["kill9"] = {"acknowledged": len(acked), "lost": lost,
                           "log_records_after_kill": records,
                           "restart_with_replay_s": restart_s,
                           "fresh_start_s": result["fresh_start_s"]}
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    (out / "live_updates.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
