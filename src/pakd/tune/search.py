"""Running a study's trials: in this process or in ``jobs`` worker processes sharing the
storage, until ``--trials`` finished ones or ``--timeout``, with a progress watch."""
from __future__ import annotations

import os
import time

from ..config import RunConfig
from ..runtime import log
from . import study as S
from .trial import Setup


def search(cfg: RunConfig, setup: Setup, url: str, study) -> None:
    """Trials until the study holds ``--trials`` finished ones or ``--timeout`` passes."""
    tune = cfg.tune
    done = len(S.finished(study))
    remaining = max(0, tune.trials - done) if tune.trials else None
    if remaining == 0:
        log.info("study %r holds %d finished trials (--trials %d): nothing to run",
                 tune.study, done, tune.trials)
        return
    timeout = tune.timeout or None
    jobs = tune.jobs or min(2, os.cpu_count() or 1)
    counts = S.shares(remaining, jobs)
    seed = (cfg.seed * 1_000_003 + len(study.get_trials(deepcopy=False))) % 2**31
    deadline = time.perf_counter() + timeout if timeout else None
    log.info("searching: %s%s, %d worker(s)%s", f"{remaining} more trial(s)" if remaining
             else "trials", f" for at most {timeout:.0f}s" if timeout else "", len(counts),
             f" ({done} finished already)" if done else "")
    watch = S.Watch(study, setup.caps, setup.objective, tune.trials or None, deadline,
                    len(counts), tune.rmse_tolerance, cfg.quiet)
    try:
        if len(counts) == 1:
            S.optimize(setup, url, tune.study, n_trials=counts[0], timeout=timeout,
                       seed=seed, callbacks=[watch])
        else:
            S.in_processes(setup, url, tune.study, counts, timeout, seed, watch)
    finally:
        watch.close()
