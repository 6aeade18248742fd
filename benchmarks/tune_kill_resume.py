"""Kill a `pakd tune` study with SIGKILL mid-way, resume it, and check that no finished
trial is lost (issue 33's target).

A copy of a run with teachers is tuned as a study of ``--trials`` trials; as soon as
``--kill-after`` trials have finished, the whole process group (workers included) gets
SIGKILL. Then `pakd tune --resume` runs the study to its ``--trials``. Checked: every trial
finished before the kill is in the resumed study unchanged (number, state, values,
parameters), the trials the kill left running are marked failed, and the study ends with
``--trials`` finished trials::

    .venv/bin/python benchmarks/tune_kill_resume.py --run RUN --out DIR [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PAKD = [sys.executable, "-c", "import sys; from pakd.cli import main; sys.exit(main())"]


def trials(run: Path, study: str) -> list[dict]:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{run / 'tune.db'}")
    return [{"number": t.number, "state": t.state.name, "values": t.values,
             "params": t.params} for t in s.get_trials(deepcopy=False)]


def finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run with teachers (copied, not changed)")
    ap.add_argument("--out", required=True, help="where the copy and summary.json go")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--kill-after", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cap", default="--max-params=8646")
    a = ap.parse_args()
    out = Path(a.out)
    run = out / "run"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(a.run, run, ignore=shutil.ignore_patterns("tune.db*", "report.html"))
    study = "killed"
    cmd = PAKD + ["tune", "--run", str(run), "--study", study, a.cap, "--trials",
                  str(a.trials), "--jobs", str(a.jobs), "--threads", "1", "-q"]
    t0 = time.time()
    p = subprocess.Popen(cmd, start_new_session=True)
    db = run / "tune.db"
    while True:
        time.sleep(0.5)
        if p.poll() is not None:
            raise SystemExit(f"the study ended (rc {p.returncode}) before the kill: give "
                             "more --trials")
        if db.is_file():
            try:
                if len(finished(trials(run, study))) >= a.kill_after:
                    break
            except Exception:           # the study is being created
                continue
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    killed_at = time.time() - t0
    before = trials(run, study)
    rc = subprocess.run(cmd + ["--resume"]).returncode
    after = trials(run, study)
    by_number = {r["number"]: r for r in after}
    kept = all(by_number.get(r["number"]) == r for r in finished(before))
    running = [r["number"] for r in before if r["state"] == "RUNNING"]
    summary = {
        "command": " ".join(cmd[3:]), "killed_after_s": round(killed_at, 1),
        "finished_before_kill": [r["number"] for r in finished(before)],
        "running_at_kill": running,
        "running_at_kill_now": {n: by_number[n]["state"] for n in running},
        "resume_rc": rc, "finished_after_resume": len(finished(after)),
        "trials_after_resume": len(after),
        "every_finished_trial_kept_unchanged": kept,
        "ok": bool(rc == 0 and kept and len(finished(after)) == a.trials
                   and all(by_number[n]["state"] == "FAIL" for n in running)),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
