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
    p.add_argument("--live", action="store_true", help="live updates (issue 35): start as a "
                   "new user, search films, rate three and watch the student's top-10 change")
    p.add_argument("--model", help="with --live: the student (default: the run's best)")
    p.add_argument("--search", default="star", help="with --live: the title search")
    args = p.parse_args()
    exe = ensure_browser()
    if args.live:
        return live_check(args, exe)
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


def live_check(args, exe: str) -> int:
    """A visitor starts as a new user, searches titles, rates three films (5, 5, 1) and the
    student's top-10 is read after each: it must appear, change, and never list a rated
    film; their ratings are listed beside it."""
    import tempfile
    from playwright.sync_api import sync_playwright
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="pakd-page-"))
    proc = start(["--model", args.model or args.run, "--state", str(state)], port)
    token = (state / "token").read_text().strip()
    result = {"tops": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True,
                                         args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(f"sessionStorage.setItem('pakd-token', {json.dumps(token)})")
            console = result.setdefault("console", [])
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"error: {e}"))
            page.goto(f"http://127.0.0.1:{port}/")
            try:
                page.wait_for_selector("#new-user", state="visible", timeout=30000)
            except Exception:
                print(console, page.inner_text("#status"))
                raise
            page.click("#new-user")
            page.fill("#q", args.search)
            page.press("#q", "Enter")
            page.wait_for_selector("#found li", timeout=30000)
            films = page.locator("#found li")
            rated = []
            for n, stars in enumerate(("5", "5", "1")):
                rated.append(films.nth(n).get_attribute("data-item"))
                films.nth(n).locator("select").select_option(stars)
                for _ in range(300):           # polled: the page's CSP forbids eval
                    if (page.locator("#rated-list li").count() == n + 1
                            and page.locator("#student-list li").count() == 10):
                        break
                    page.wait_for_timeout(100)
                page.wait_for_timeout(300)
                lis = page.locator("#student-list li")
                result["tops"].append([lis.nth(j).get_attribute("data-item")
                                       for j in range(lis.count())])
                result.setdefault("titles", []).append(lis.all_inner_texts())
            result["rated"] = rated
            result["rated_list"] = page.locator("#rated-list li").all_inner_texts()
            result["errors"] = page.inner_text("#status")
            shot = Path(args.screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(result, indent=2))
    tops = result["tops"]
    listed = {i for top in tops for i in top}
    ok = (len(tops) == 3 and all(len(t) == 10 for t in tops) and tops[0] != tops[2]
          and not listed & set(result["rated"]) and not result["errors"])
    print("live page check:", "passed" if ok else "FAILED", "- screenshot", args.screenshot,
          f"({len(listed)} titles over the three top-10s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
