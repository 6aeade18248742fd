"""The stages of a run, one recipe module each, readable top to bottom.

Each recipe's ``run(cfg, rd, enc=None)`` reads the previous stages' artefacts from the run
directory (`pakd.rundir.RunDir`) and writes its own, so any stage can be re-run alone
(`pakd fisher --run DIR`); `run_all` is every stage in order. `STAGES` is the one list.
"""
from __future__ import annotations

import time

from .. import distributed, memory
from ..config import RunConfig
from ..data import load_encoded
from ..rundir import RunDir, write_json
from ..runtime import environment, log
from . import distill, ensemble, fisher, report, split, teachers

# name -> recipe module, in run order
STAGES = {"split": split, "teachers": teachers, "ensemble": ensemble, "fisher": fisher,
          "distill": distill, "report": report}


def run_all(cfg: RunConfig, rd: RunDir, track: str | None = None) -> str:
    """Every stage in order; returns the run summary (Markdown) the report stage writes.
    RUN/timings.json holds the seconds of each stage, under ``peak_rss_mb`` each stage's own
    peak resident memory (`pakd.memory.stage`), and under ``environment`` the versions and
    commit the run ran with (`pakd.runtime.environment`). ``track``: an MLflow URI ("" for
    the default store) that gets each stage as it finishes (`pakd.report.track`)."""
    timings: dict = {}
    stages: dict[str, dict] = {}
    t_all = time.perf_counter()
    main = distributed.is_main()
    tracker = None
    if track is not None and main:
        from ..report.track import Tracker
        tracker = Tracker(track or None, cfg, rd)
    try:
        out = _stages(cfg, rd, timings, stages, t_all, main, tracker)
    except BaseException:
        if tracker is not None:
            tracker.finish(failed=True)
        raise
    if tracker is not None:
        tracker.finish()
    return out


def _stages(cfg, rd, timings, stages, t_all, main, tracker) -> str:
    enc, out = None, ""
    for name, recipe in STAGES.items():
        if name == "report" and main:   # the summary reports the time of all before it
            timings["total"] = time.perf_counter() - t_all
            write_json(rd.timings_json, {**timings, "peak_rss_mb": {
                n: s["peak_rss_mb"] for n, s in stages.items()},
                "peak_rss_per_stage": all(s["per_stage"] for s in stages.values()),
                "environment": environment()})
        with memory.stage(stages, name):
            # under torchrun the teachers train, the Fisher is estimated and the students
            # are trained on every rank; rank 0 alone runs the rest
            if name == "split" and rd.split_csv.is_file():
                pass            # made before run.yaml (the CLI fits settings to its size)
            elif name in ("teachers", "fisher", "distill") or main:
                out = recipe.run(cfg, rd, enc)
            distributed.barrier()
            if name == "split":
                enc = load_encoded(cfg, rd)
        timings[name] = stages[name]["seconds"]
        log.info("stage %s: %.1fs, peak RSS %.0f MB", name, timings[name],
                 stages[name]["peak_rss_mb"])
        if tracker is not None:
            tracker.stage(name, {k: v for k, v in stages[name].items() if k != "per_stage"})
    return out


__all__ = ["STAGES", "run_all", "split", "teachers", "ensemble", "fisher", "distill", "report"]
