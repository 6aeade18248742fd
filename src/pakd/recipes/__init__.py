"""The stages of a run, one recipe module each, readable top to bottom.

Each recipe's ``run(cfg, rd, enc=None)`` reads the previous stages' artefacts from the run
directory (`pakd.rundir.RunDir`) and writes its own, so any stage can be re-run alone
(`pakd fisher --run DIR`); `run_all` is every stage in order. `STAGES` is the one list.

A recipe module is a `Stage`: besides ``run`` it may say that it runs on every torchrun
process (``EVERY_RANK``: the training stages), that it reports the run's timings
(``READS_TIMINGS``: they are written before it), and when its work is already there
(``done(rd)``: the split, which the CLI makes before run.yaml) - so `run_all` never asks
for a stage by name.
"""
from __future__ import annotations

import time
from typing import Protocol

from .. import distributed, memory
from ..config import RunConfig
from ..data import load_encoded
from ..results import RunTimings, write_result
from ..rundir import RunDir
from ..runtime import environment, log
from . import distill, ensemble, fisher, report, split, teachers

class Stage(Protocol):
    """What `run_all` needs of a recipe module (the optional flags default to False)."""

    def run(self, cfg: RunConfig, rd: RunDir, enc=None): ...


def _flag(recipe, name: str) -> bool:
    return bool(getattr(recipe, name, False))


# name -> recipe module, in run order
STAGES: dict[str, Stage] = {"split": split, "teachers": teachers, "ensemble": ensemble, "fisher": fisher,
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
        if _flag(recipe, "READS_TIMINGS") and main:   # the time of all stages before it
            timings["total"] = time.perf_counter() - t_all
            write_result(rd.timings_json, RunTimings.model_validate({
                **timings, "peak_rss_mb": {n: s["peak_rss_mb"] for n, s in stages.items()},
                "peak_rss_per_stage": all(s["per_stage"] for s in stages.values()),
                "environment": environment()}))
        with memory.stage(stages, name):
            # under torchrun the training stages run on every rank; rank 0 alone the rest
            done = getattr(recipe, "done", None)
            if not (done is not None and done(rd)) and (_flag(recipe, "EVERY_RANK") or main):
                out = recipe.run(cfg, rd, enc)
            distributed.barrier()
            if enc is None and rd.split_csv.is_file():
                enc = load_encoded(cfg, rd)
        timings[name] = stages[name]["seconds"]
        log.info("stage %s: %.1fs, peak RSS %.0f MB", name, timings[name],
                 stages[name]["peak_rss_mb"])
        if tracker is not None:
            tracker.stage(name, {k: v for k, v in stages[name].items() if k != "per_stage"})
    return out


__all__ = ["STAGES", "run_all", "split", "teachers", "ensemble", "fisher", "distill", "report"]
