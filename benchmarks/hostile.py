"""Every hostile input of issue 34 against `pakd` and `pakd serve`, under resource limits.

Each command-line case builds its input in a scratch folder, runs ``python -m pakd.cli``
in a child process and measures it like ``/usr/bin/time``: the exit code, the peak
resident memory (``wait4``'s ``ru_maxrss``), the wall time; a watchdog kills the child past
``--rss-cap-mb`` or ``--timeout`` (so a case that still explodes cannot take the machine
down). It also checks that the input files are byte-for-byte unchanged and that no run
folder was left behind where the command was refused. The HTTP cases probe a `pakd serve`
started on a loopback port (bound to the name ``localhost``, so its Host check is on; a
second one with a token file) and report the status, the server's peak memory so far
(VmHWM) and the time per request. The targets of the issue: exit 2 (or a 4xx), at most
500 MB and 5 s per case, inputs untouched, no partial run folder::

    .venv/bin/python benchmarks/hostile.py --run runs/q \
        --out benchmarks/results/$(date +%F)_hostile
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB, TARGET_S = 500, 5.0


# ----------------------------------------------------------------------------- inputs

def gzip_bomb(path: Path, inflated: int) -> None:
    """A ratings CSV whose rows repeat: ``inflated`` bytes compress ~1000x."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"1,2,3\n" * (1 << 20)
    with open(path, "wb") as f:
        f.write(c.compress(b"user,item,rating\n"))
        for _ in range(inflated // len(block)):
            f.write(c.compress(block))
        f.write(c.flush())


def zip_bomb(path: Path, inflated: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("ml-latest/ratings.csv", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(inflated // len(block)):
                f.write(block)
        zf.writestr("ml-latest/movies.csv", "movieId,title,genres\n")


def parquet_bomb(path: Path, rows: int) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    import numpy as np
    ids = pa.array(np.zeros(rows, np.int32))
    col = pa.DictionaryArray.from_arrays(ids, pa.array(["x" * 1000]))
    table = pa.table({"user": pa.array(np.ones(rows, np.int64)),
                      "item": pa.array(np.ones(rows, np.int64)),
                      "rating": pa.array(np.ones(rows)), "title": col})
    pq.write_table(table, path, compression="zstd")
    return True


def model_copy(run: Path, scratch: Path, name: str, edit) -> Path:
    """The run's best student copied to ``scratch/name/m`` with its JSON config edited."""
    src = run / "models" / "saved" / "best_student_model"
    d = scratch / name
    d.mkdir(parents=True)
    for suffix in (".safetensors", ".catalog.json"):
        shutil.copy(str(src) + suffix, str(d / "m") + suffix)
    cfg = json.loads(Path(str(src) + ".json").read_text())
    text = edit(cfg)
    (d / "m.json").write_text(text if isinstance(text, str) else json.dumps(cfg))
    return d / "m"


def _set(path: str, value):
    def edit(cfg):
        node = cfg
        keys = path.split("/")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
    return edit


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def mirror(folder: Path):
    import functools
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def cases(run: Path, s: Path) -> tuple[list[dict], Path]:
    """name, what it is, the pakd arguments, files that must stay unchanged, a run folder
    that must not appear."""
    model = lambda name, edit: str(model_copy(run, s, name, edit))   # noqa: E731
    out = []

    def case(name, what, argv, inputs=(), new_run=None, skip=None):
        out.append(dict(name=name, what=what, argv=argv, inputs=[str(p) for p in inputs],
                        new_run=str(new_run) if new_run else None, skip=skip))

    # model configs asking for more than their weights hold
    case("model_hidden_1e9", "student config hidden [1e9, 1e9]",
         ["recommend", "--model", model("hidden", _set("arch/hidden", [10**9, 10**9])),
          "--user", "1"])
    case("model_hidden_float", "hidden [1e9, 1e9] written as floats",
         ["recommend", "--model", model("hiddenf", _set("arch/hidden", [1e9, 1e9])),
          "--user", "1"])
    case("model_factors_1e9", "arch factors 1e9",
         ["recommend", "--model", model("factors", _set("arch/factors", 10**9)), "--user", "1"])
    case("model_vocab_1e12", "schema vocab_size 1e12",
         ["recommend", "--model", model("vocab", _set("schema/fields/0/vocab_size", 10**12)),
          "--user", "1"])
    case("model_dim_mismatch", "hidden [9] for stored [8]",
         ["recommend", "--model", model("dim", _set("arch/hidden", [9])), "--user", "1"])
    case("model_config_empty", "an empty model config JSON",
         ["recommend", "--model", model("empty", lambda c: ""), "--user", "1"])
    weights = model("weights", lambda c: None)
    Path(weights + ".safetensors").write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
    case("model_weights_header", "weights file whose header claims 2^60 bytes",
         ["recommend", "--model", weights, "--user", "1"])
    case("serve_hidden_1e9", "serve a config hidden [1e9, 1e9]",
         ["serve", "--model", str(s / "hidden" / "m"), "--port", "0"])
    case("recommend_k_1e9", "recommend -k 1000000000",
         ["recommend", "--model", str(run), "--user", "1", "-k", "1000000000"])

    # settings files
    bomb = s / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb.write_text("\n".join(lines) + "\n")
    case("yaml_alias_bomb", "1 KB billion-laughs settings file",
         ["config", "show", "--config", str(bomb)], [bomb])
    deep = s / "deep.yaml"
    deep.write_text("a: " + "[" * 100000 + "]" * 100000 + "\n")
    case("yaml_deep_nesting", "100,000 nested YAML lists",
         ["config", "show", "--config", str(deep)], [deep])
    big = s / "big.yaml"
    big.write_text("# padding\n" * 200000)
    case("yaml_oversized", "a 2 MB settings file", ["config", "show", "--config", str(big)], [big])

    # data files
    gz = s / "bomb.csv.gz"
    gzip_bomb(gz, 1 << 30)
    case("gzip_bomb", f"{gz.stat().st_size / 1e6:.1f} MB gzip -> 1 GB",
         ["data", "info", "--dataset", str(gz)], [gz])
    ts = s / "ts.csv"
    ts.write_text("user,item,rating,timestamp\n1,1,4,100\n2,2,3," + "1" * 10_000_000 + "\n")
    case("timestamp_10mb", "a 10 MB timestamp field", ["data", "info", "--dataset", str(ts)],
         [ts])
    ts1 = s / "ts1.csv"
    ts1.write_text("user,item,rating,timestamp\n1,1,4,100\n2,2,3," + "1" * 1_000_000 + "\n")
    case("timestamp_1mb", "a 1 MB timestamp field (37 s before)",
         ["data", "info", "--dataset", str(ts1)], [ts1])
    fld = s / "field.csv"
    fld.write_text("user,item,rating,timestamp\n1,1,4,100\n2,2,3,2018-" + "9" * 100_000 + "\n")
    case("field_100kb", "a 100 KB field (under the line cap)",
         ["data", "info", "--dataset", str(fld)], [fld])
    corrupt = s / "corrupt.csv.gz"
    g = gzip.compress(b"user,item,rating\n1,2,3\n" * 100)
    corrupt.write_bytes(g[:10] + b"\xff" * 20 + g[30:])
    case("gzip_corrupt", "a gzip with damaged deflate data",
         ["data", "info", "--dataset", str(corrupt)], [corrupt])
    empty = s / "empty.csv.gz"
    empty.write_bytes(b"")
    case("gzip_empty", "an empty .gz", ["data", "info", "--dataset", str(empty)], [empty])
    pq_garbage = s / "garbage.parquet"
    pq_garbage.write_bytes(os.urandom(5000))
    case("parquet_garbage", "5 KB of random bytes named .parquet",
         ["data", "info", "--dataset", str(pq_garbage)], [pq_garbage])
    pqb = s / "bomb.parquet"
    if parquet_bomb(pqb, 2_000_000):
        case("parquet_bomb", f"{pqb.stat().st_size / 1e3:.0f} KB Parquet -> 2 GB of strings",
             ["data", "info", "--dataset", str(pqb)], [pqb])
    folder = s / "a_folder"
    folder.mkdir()
    case("dataset_directory", "--dataset is a folder", ["data", "info", "--dataset", str(folder)])
    loop = s / "loop.csv"
    os.symlink(loop, loop)
    case("dataset_symlink_loop", "--dataset is a symlink to itself",
         ["data", "info", "--dataset", str(loop)])
    unreadable = s / "secret.csv"
    unreadable.write_text("user,item,rating\n1,2,3\n")
    unreadable.chmod(0)
    case("dataset_unreadable", "--dataset without read permission",
         ["data", "info", "--dataset", str(unreadable)],
         skip="running as root: read permissions are not enforced" if os.geteuid() == 0 else None)

    # seeds and run folders
    small = s / "small.csv"
    small.write_text("user,item,rating\n" + "".join(f"{u},{i},{(u + i) % 5 + 1}\n"
                                                     for u in range(1, 20) for i in range(1, 9)))
    for name, seed in (("seed_negative", "-1"), ("seed_2_70", str(2**70))):
        case(name, f"--seed {seed if len(seed) < 8 else '2**70'}",
             ["data", "split", "--run", str(s / name), f"--seed={seed}", "--dataset", str(small)],
             [small], new_run=s / name)
    case("split_bad_data", "data split of a bad file into a new folder",
         ["data", "split", "--run", str(s / "new_split"), "--dataset", str(corrupt)],
         [corrupt], new_run=s / "new_split")
    case("report_missing_run", "report --run on a missing folder",
         ["report", "--run", str(s / "no_such_run")], new_run=s / "no_such_run")

    # downloads
    case("download_http", "data download over plain http",
         ["data", "download", "ml-100k", "--base-url", "http://127.0.0.1:9", "--cache-dir",
          str(s / "cache_http")], new_run=s / "cache_http")
    case("download_no_checksum", "ml-latest: no checksum of record",
         ["data", "download", "ml-latest", "--cache-dir", str(s / "cache_latest")],
         new_run=s / "cache_latest")
    zdir = s / "zip_mirror"
    zdir.mkdir()
    zip_bomb(zdir / "ml-latest.zip", 400 << 20)
    case("zip_bomb", f"{(zdir / 'ml-latest.zip').stat().st_size / 1e3:.0f} KB zip -> 400 MB "
         "(allowed http + unverified)",
         ["data", "download", "ml-latest", "--base-url", "{mirror}", "--allow-insecure",
          "--allow-unverified", "--cache-dir", str(s / "cache_zip")])

    # serve
    case("serve_port_99999", "serve --port 99999",
         ["serve", "--model", str(run), "--port", "99999"])
    case("serve_port_in_use", "serve on a port in use",
         ["serve", "--model", str(run), "--port", "{busy_port}"])
    case("serve_public_no_token", "serve --host 0.0.0.0 without a token",
         ["serve", "--model", str(run), "--host", "0.0.0.0", "--port", "0"])
    return out, zdir


# ----------------------------------------------------------------------------- running

def vm(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_case(argv: list[str], cap_mb: float, timeout: float, env: dict) -> dict:
    """Exit code, peak RSS (MB), seconds, the last stderr line, and how it ended."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pakd.cli", *argv], stdout=out,
                                stderr=err, cwd=ROOT, env=env)
        killed = []

        def watch():
            while proc.returncode is None:
                if vm(proc.pid, "VmRSS") > cap_mb:
                    killed.append(f"killed at {cap_mb:.0f} MB")
                elif time.perf_counter() - t0 > timeout:
                    killed.append(f"killed after {timeout:.0f} s")
                if killed:
                    proc.kill()
                    return
                time.sleep(0.02)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        th.join(1)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    message = next((ln for ln in lines if ln.startswith("pakd") and "error" in ln), None) or \
        (lines[-1] if lines else "")
    return {"exit": proc.returncode, "peak_mb": usage.ru_maxrss / 1024, "seconds": seconds,
            "message": message, "traceback": "Traceback (most recent call last)" in stderr,
            "stdout": stdout[:300], "killed": killed[0] if killed else None}


def md5(path: str) -> str | None:
    p = Path(path)
    return hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else None


def http_cases(run: Path, scratch: Path, env: dict) -> list[dict]:
    import httpx
    rows = []
    token = "hostile-benchmark-token-0123456789"
    tfile = scratch / "token"
    tfile.write_text(token)
    tfile.chmod(0o600)
    servers = {}
    try:
        for name, extra in (("named", ["--host", "localhost"]),
                            ("token", ["--token-file", str(tfile)])):
            proc = subprocess.Popen([sys.executable, "-m", "pakd.cli", "serve", "--model",
                                     str(run), "--port", "0", "-q", *extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=ROOT, env=env)
            line = proc.stdout.readline()          # "serving ... on http://host:port/"
            if "serving" not in line:
                raise RuntimeError(f"server {name} did not start: {proc.stderr.read()[-2000:]}")
            url = line.split(" on ")[1].split()[0].rstrip("/")
            servers[name] = (proc, url)
        named, turl = servers["named"], servers["token"][1]
        base = named[1]
        js = {"content-type": "application/json"}

        def probe(name, what, method, url, expect, pid, check=None, **kw):
            t = time.perf_counter()
            try:
                r = httpx.request(method, url, timeout=30, **kw)
                status, seconds = r.status_code, time.perf_counter() - t
                try:
                    body = r.json()
                except ValueError:
                    body = None
                msg = (body or {}).get("error", {}).get("message", "") if isinstance(body, dict) \
                    else ""
                ok_shape = status < 400 or (isinstance(body, dict) and set(body) == {"error"}
                                            and set(body["error"]) == {"code", "message"})
                note = check(r) if check else ""
            except httpx.HTTPError as e:
                status, seconds, msg, ok_shape, note = 0, time.perf_counter() - t, str(e), False, ""
            rows.append({"name": name, "what": what, "exit": status, "expect": expect,
                         "peak_mb": vm(pid, "VmHWM"), "seconds": seconds,
                         "message": note or msg, "traceback": False, "error_shape": ok_shape,
                         "http": True})

        pid = named[0].pid
        probe("http_nested_json", "33,000 nested brackets in /score", "POST", f"{base}/score",
              422, pid, content=b"[" * 33000 + b"]" * 33000, headers=js)
        probe("http_text_plain", "/score with Content-Type text/plain", "POST", f"{base}/score",
              415, pid, content=b'{"pairs": [[1, 1]]}', headers={"content-type": "text/plain"})
        probe("http_oversized_body", "a 10 MB /score body", "POST", f"{base}/score", 413, pid,
              content=b"[" + b"1," * 5_000_000 + b"1]", headers=js)
        probe("http_bad_host", "Host: evil.example (bound to localhost)", "GET",
              f"{base}/healthz", 400, pid, headers={"host": "evil.example"})
        probe("http_unknown_route", "GET /nowhere", "GET", f"{base}/nowhere", 404, pid)
        probe("http_method", "PUT /score", "PUT", f"{base}/score", 405, pid)
        probe("http_docs_off", "GET /docs without --docs", "GET", f"{base}/docs", 404, pid)
        probe("http_openapi_off", "GET /openapi.json without --docs", "GET",
              f"{base}/openapi.json", 404, pid)

        def no_paths(r):
            text = r.text
            leaks = [w for w in (str(run.resolve()), '"pid"', '"path"') if w in text]
            return "no paths, no pid" if not leaks else f"LEAKS {leaks}"

        probe("http_metadata", "/metadata: paths or PID?", "GET", f"{base}/metadata", 200, pid,
              check=no_paths)

        def headers(r):
            need = ("content-security-policy", "x-frame-options", "x-content-type-options")
            missing = [h for h in need if h not in r.headers]
            return "CSP, X-Frame-Options, nosniff" if not missing else f"MISSING {missing}"

        probe("http_headers", "security headers on /", "GET", f"{base}/", 200, pid, check=headers)
        probe("http_unknown_user", "/recommend of an unknown user", "GET",
              f"{base}/recommend?user=../../etc/passwd", 404, pid)
        tpid = servers["token"][0].pid
        probe("http_no_token", "/recommend without the bearer token", "GET",
              f"{turl}/recommend?user=1", 401, tpid)
        probe("http_wrong_token", "/recommend with a wrong token", "GET",
              f"{turl}/recommend?user=1", 401, tpid,
              headers={"authorization": "Bearer " + "x" * 34})
        # the rate limit: 400 requests as fast as one client can
        t = time.perf_counter()
        codes = {}
        with httpx.Client(timeout=10) as c:
            for _ in range(400):
                code = c.get(f"{base}/users?limit=1").status_code
                codes[code] = codes.get(code, 0) + 1
        rows.append({"name": "http_rate_limit", "what": "400 requests from one client at once",
                     "exit": 429 if codes.get(429) else 200, "expect": 429,
                     "peak_mb": vm(pid, "VmHWM"), "seconds": time.perf_counter() - t,
                     "message": f"codes {codes}", "traceback": False, "error_shape": True,
                     "http": True})
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if "Traceback" in (err or ""):
                for r in rows:
                    r["traceback"] = True
    return rows


def verdict(r: dict) -> str:
    if r.get("skip"):
        return "skipped"
    problems = []
    if r.get("http"):
        if r["exit"] != r["expect"]:
            problems.append(f"status {r['exit']} (want {r['expect']})")
        if not r["error_shape"]:
            problems.append("error shape")
    else:
        if r["exit"] != 2:
            problems.append(f"exit {r['exit']}")
        if r["killed"]:
            problems.append(r["killed"])
        if r["seconds"] > TARGET_S:
            problems.append(f"{r['seconds']:.1f} s")
        if not r.get("inputs_unchanged", True):
            problems.append("input changed")
        if r.get("left_run"):
            problems.append("left a folder")
    if r["peak_mb"] > TARGET_MB:
        problems.append(f"{r['peak_mb']:.0f} MB")
    if r["traceback"]:
        problems.append("traceback")
    return "ok" if not problems else "MISSED: " + ", ".join(problems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/q", help="a finished run (a --profile quick one "
                    "is enough): its best student and ensemble are the models probed")
    ap.add_argument("--out", type=Path, help="folder for hostile.json and hostile.md")
    ap.add_argument("--rss-cap-mb", type=float, default=2000, help="kill a case past this")
    ap.add_argument("--timeout", type=float, default=60, help="kill a case past this")
    ap.add_argument("--only", help="comma list of case names (prefixes)")
    ap.add_argument("--no-http", action="store_true")
    args = ap.parse_args()
    run = Path(args.run).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="pakd-hostile-"))
    env = {**os.environ, "PAKD_CACHE": str(scratch / "cache"), "PYTHONWARNINGS": "ignore"}
    rows = []
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    server = None
    try:
        todo, zdir = cases(run, scratch)
        server = mirror(zdir)
        subst = {"{mirror}": f"http://127.0.0.1:{server.server_address[1]}",
                 "{busy_port}": str(busy.getsockname()[1])}
        for c in todo:
            if args.only and not any(c["name"].startswith(o) for o in args.only.split(",")):
                continue
            if c["skip"]:
                rows.append({**c, "exit": None, "peak_mb": 0, "seconds": 0,
                             "message": c["skip"], "traceback": False, "killed": None})
                print(f"{c['name']:<24} skipped: {c['skip']}", flush=True)
                continue
            argv = [subst.get(a, a) for a in c["argv"]]
            before = {p: md5(p) for p in c["inputs"]}
            r = run_case(argv, args.rss_cap_mb, args.timeout, env)
            r.update(name=c["name"], what=c["what"],
                     inputs_unchanged=all(md5(p) == h for p, h in before.items()),
                     left_run=bool(c["new_run"] and Path(c["new_run"]).exists()))
            rows.append(r)
            print(f"{r['name']:<24} exit {r['exit']!s:>4}  {r['peak_mb']:7.1f} MB  "
                  f"{r['seconds']:6.2f} s  {verdict(r):<10} {r['message'][:110]}", flush=True)
        if not args.no_http and not args.only:
            for r in http_cases(run, scratch, env):
                rows.append(r)
                print(f"{r['name']:<24} HTTP {r['exit']:>4}  {r['peak_mb']:7.1f} MB  "
                      f"{r['seconds']:6.3f} s  {verdict(r):<10} {r['message'][:110]}",
                      flush=True)
    finally:
        busy.close()
        if server is not None:
            server.shutdown()
        for p in scratch.rglob("*"):
            if not p.is_symlink():
                try:
                    p.chmod(0o700)
                except OSError:
                    pass
        shutil.rmtree(scratch, ignore_errors=True)
    table = ["| case | input | exit / status | peak MB | seconds | verdict | message |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        msg = r["message"].replace("|", "\\|").replace("pakd: error: ", "")
        table.append(f"| {r['name']} | {r['what']} | {r['exit']} | {r['peak_mb']:.0f} | "
                     f"{r['seconds']:.2f} | {verdict(r)} | {msg[:160]} |")
    summary = {"cases": len(rows), "ok": sum(verdict(r) == "ok" for r in rows),
               "skipped": sum(verdict(r) == "skipped" for r in rows),
               "missed": [r["name"] for r in rows if verdict(r).startswith("MISSED")],
               "targets": {"peak_mb": TARGET_MB, "seconds": TARGET_S},
               "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    print("\n".join(table))
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hostile.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                          indent=2) + "\n")
        (args.out / "hostile.md").write_text("\n".join(table) + "\n")
    return 0 if not summary["missed"] else 1


if __name__ == "__main__":
    sys.exit(main())
