"""The service's page in a real headless browser: load /, pick a user, find both lists.

Installs what it needs when missing - Debian's chromium (apt-get) and the playwright
Python package (pip; its bundled browsers are not downloaded, the system chromium is
driven) - so `make test` never needs a browser. Starts `pakd serve` with the run's best
student and its teacher ensemble on an ephemeral loopback port, and writes a screenshot.

    .venv/bin/python benchmarks/page_check.py --run runs/default \
        --screenshot docs/serve_page.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start  # noqa: E402


def ensure_browser() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True)
        exe = shutil.which("chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], check=True)
    return exe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/default")
    p.add_argument("--screenshot", default="docs/serve_page.png")
    p.add_argument("--pick", type=int, default=4, help="which user of the list to pick (0-based)")
    args = p.parse_args()
    exe = ensure_browser()
    from playwright.sync_api import sync_playwright
    run = Path(args.run)
    port = free_port()
    proc = start(["--model", str(run), "--teacher-model", str(run)], port)
    result = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True,
                                         args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#user option", state="attached", timeout=30000)
            value = page.locator("#user option").nth(args.pick).get_attribute("value")
            page.select_option("#user", value)
            page.click("#go")
            page.wait_for_function(
                "document.querySelectorAll('#student-list li').length === 10 && "
                "document.querySelectorAll('#teacher-list li').length === 10", timeout=60000)
            result = {"user": value,
                      "student": page.locator("#student-list li").all_inner_texts(),
                      "teacher": page.locator("#teacher-list li").all_inner_texts(),
                      "overlap": page.inner_text("#overlap"),
                      "errors": page.inner_text("#status")}
            shot = Path(args.screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(result, indent=2))
    ok = len(result.get("student", [])) == 10 and not result.get("errors")
    print("page check:", "passed" if ok else "FAILED", "- screenshot", args.screenshot)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
