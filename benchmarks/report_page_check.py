"""RUN/report.html in headless Chromium: every section rendered, nothing on the console, a
screenshot kept for the docs.

    .venv/bin/python benchmarks/report_page_check.py --run runs/default \
        --screenshot docs/report_page.png

Installs Debian's chromium when missing (apt-get). Chromium loads the page from the file
with the network closed to it (the background-networking flags this machine needs), prints
the DOM after load, and logs every console message to stderr ("CONSOLE"); the page has no
script, so any console line fails the check, as does a section missing from the DOM, a
reference to an http(s) asset, or a page over 5 MB.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pakd.report.html import SECTIONS  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I)


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
        exe = shutil.which("chromium")
    return exe


def check(page: Path, screenshot: Path | None, width: int = 1300, height: int = 4200) -> dict:
    exe = chromium()
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                              "--v=0", "--dump-dom", url], capture_output=True, text=True,
                             timeout=120)
    dom = run.stdout
    console = [l for l in run.stderr.splitlines() if ":CONSOLE" in l]
    html = page.read_text()
    out = {"page": str(page), "bytes": page.stat().st_size,
           "sections": {sid: f'id="{sid}"' in dom for sid, _ in SECTIONS},
           "figures": dom.count("<svg"), "console": console,
           "remote_assets": len(REMOTE.findall(html)), "chromium_exit": run.returncode}
    if screenshot is not None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}",
                            f"--window-size={width},{height}", f"--screenshot={screenshot}", url],
                           capture_output=True, text=True, timeout=120, check=True)
        out["screenshot"] = str(screenshot)
    out["ok"] = (run.returncode == 0 and all(out["sections"].values()) and not console
                 and out["remote_assets"] == 0 and out["bytes"] <= 5 * 2**20)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run directory holding report.html")
    ap.add_argument("--screenshot", help="PNG to write (e.g. docs/report_page.png)")
    a = ap.parse_args(argv)
    page = Path(a.run) / "report.html"
    if not page.is_file():
        print(f"{page} not found: run `pakd report --run {a.run} --html` first", file=sys.stderr)
        return 2
    res = check(page, Path(a.screenshot) if a.screenshot else None)
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
