"""The Optuna side of `pakd tune`: storage, the study and its caps, the pruner, workers,
progress, the Pareto front and the chosen trial.

- Objectives, all on the valid part: NDCG@10 (maximise), RMSE (minimise), and the size
  or latency the user caps (minimise: parameters, saved bytes or milliseconds).
- The caps are the trials' constraints (`constraints`, from each trial's user attributes
  ``params``, ``bytes``, ``latency_ms``), which the TPE sampler reads; size caps are never exceeded (the budget is drawn
  within them), a latency cap is measured and a slower trial stays in the study as
  infeasible. A study remembers its caps and what its trials depend on (seed, teacher and
  its files); resuming it with other ones is refused, the difference named.
- Early stopping: Optuna's pruners take one objective, so each trial's valid NDCG@10 per
  epoch goes to a companion single-objective study, ``<name>.curves``, in the same storage,
  whose `optuna.pruners.MedianPruner` decides (`Curves`).
- Workers: ``jobs`` processes share the study through its storage, each on one thread; a
  killed command loses no finished trial (the storage holds them), and ``--resume`` marks
  the trials it left running as failed and runs the missing ones.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

from ..errors import PakdError
from ..runtime import log, progress

INSTALL = "pip install 'pakd[tune]'"
DIRECTIONS = ("maximize", "minimize", "minimize")
CAP_ATTR = {"max_params": "params", "max_bytes": "bytes", "max_latency_ms": "latency_ms"}
CAP_FLAG = {"max_params": "--max-params", "max_bytes": "--max-bytes",
            "max_latency_ms": "--max-latency-ms"}
FINISHED = ("COMPLETE", "PRUNED")


def require():
    """The optuna module; stops before any work when the extra is not installed."""
    try:
        import optuna
    except ImportError:
        raise PakdError(f"pakd tune needs Optuna, which is not installed: {INSTALL}, then run "
                        "the command again") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def objective_of(caps: dict) -> str:
    """The third objective: what the cap limits (parameters when there is no cap)."""
    return CAP_ATTR[next(iter(caps))] if caps else "params"


def shown(url: str) -> str:
    """A storage URL as it may be printed: without its password."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url[:120]


def open_storage(url: str, heartbeat: bool = True):
    """Optuna's RDB storage at ``url`` (SQLite waits for a busy file instead of failing;
    with ``heartbeat``, a trial whose process stopped sending heartbeats for 3 minutes is
    marked failed when the next trial starts)."""
    optuna = require()
    kw = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    beat = {"heartbeat_interval": 60, "grace_period": 180} if heartbeat else {}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kw, **beat)
        if url.startswith("sqlite"):
            _sqlite_wal(storage.engine)
        return storage
    except ImportError as e:
        raise PakdError(f"--storage {shown(url)}: its database driver is not installed "
                        f"({str(e).splitlines()[0][:120]}); install it (postgresql: pip install "
                        "psycopg2-binary; mysql: pip install pymysql), or use sqlite:///path") \
            from None
    except Exception as e:
        raise PakdError(f"--storage {shown(url)} cannot be opened ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}); give an Optuna storage URL that "
                        "exists and is reachable, e.g. sqlite:///path/to/tune.db or "
                        "postgresql://user@host/database") from None


def _sqlite_wal(engine) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints: a commit no longer waits for
    the disk (about 12 ms each, over a hundred per trial), and a killed process still loses
    no committed trial (only a power cut could lose the last ones)."""
    from sqlalchemy import event

    def pragmas(conn, _record):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
    event.listen(engine, "connect", pragmas)
    engine.dispose()                  # connections opened before the listener: closed


def find(storage, name: str):
    """The study ``name`` in ``storage``, or None."""
    optuna = require()
    if name not in optuna.study.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def differences(stored: dict, now: dict) -> list[str]:
    """``what: stored -> now`` for each entry that differs."""
    return [f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(stored) | set(now))
            if stored.get(k) != now.get(k)]


def caps_text(caps: dict) -> str:
    return " ".join(f"{CAP_FLAG[k]} {v:g}" for k, v in caps.items()) or "no cap"


def check_resumed(study, caps: dict | None, identity: dict, where: str) -> dict:
    """The caps a resumed study runs under (its own when ``caps`` is None); refuses other
    caps, or trials that would depend on another seed, teacher or teacher files."""
    attrs = study.user_attrs
    stored = attrs.get("caps", {})
    if caps is not None and stored != caps:
        raise PakdError(f"study {study.study_name!r} in {where} was made with "
                        f"{caps_text(stored)}, this command gives {caps_text(caps)}: its "
                        f"trials were drawn within the other caps. Resume it with "
                        f"{caps_text(stored)} (or no cap flag), or start another study with "
                        "--study NAME")
    diff = differences(attrs.get("identity", {}), identity)
    if diff:
        raise PakdError(f"study {study.study_name!r} in {where} was made on other inputs "
                        f"({'; '.join(diff)}): its trials are not comparable with new ones. "
                        "Start another study with --study NAME")
    return stored


def create(storage, name: str, caps: dict, identity: dict, reference: dict):
    """A new study with its caps and identity, and the run's own settings queued as its
    first trial."""
    optuna = require()
    study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS))
    study.set_user_attr("caps", caps)
    study.set_user_attr("identity", identity)
    study.set_user_attr("objectives", ["valid_ndcg@10", "valid_rmse", objective_of(caps)])
    study.enqueue_trial(reference, user_attrs={"reference": True})
    return study


def recover(storage, study, reference: dict, local: bool) -> int:
    """Before resuming: trials left running by a command that was stopped are marked failed
    when the storage is the run's own (the run lock says nobody else runs them; elsewhere
    the heartbeat does it), and the first trial is queued again if it never finished."""
    optuna = require()
    state = optuna.trial.TrialState
    n = 0
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if local:
            storage.set_trial_state_values(t._trial_id, state.FAIL)
            n += 1
    refs = [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("reference") and t.state != state.FAIL]
    if not refs:
        study.enqueue_trial(reference, user_attrs={"reference": True})
    return n


def finished(study) -> list:
    """Trials that ended (complete or pruned): they count towards ``--trials``."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]


# ----------------------------------------------------------------------------- pruning

class Curves:
    """A trial's valid NDCG@10 per epoch in the companion study ``<name>.curves``, whose
    pruner says when to stop (created with the first report)."""

    def __init__(self, study, enabled: bool):
        self.study, self.enabled, self.trial = study, enabled, None

    def report(self, value: float, step: int) -> None:
        if self.trial is None:
            self.trial = self.study.ask()
        self.trial.report(value, step)

    def should_stop(self) -> bool:
        return self.enabled and self.trial is not None and self.trial.should_prune()

    def end(self, value: float | None, state: str) -> None:
        if self.trial is None:
            return
        optuna = require()
        st = getattr(optuna.trial.TrialState, state)
        self.study.tell(self.trial, value if state == "COMPLETE" else None, state=st)


def curves_study(storage, name: str, startup: int, warmup: int):
    optuna = require()
    return optuna.create_study(storage=storage, study_name=name + ".curves",
                               direction="maximize", load_if_exists=True,
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=startup,
                                                                  n_warmup_steps=warmup))


# ----------------------------------------------------------------------------- trials

def constraints(attrs: dict, caps: dict) -> dict[str, float]:
    """The caps as constraints (<= 0: within): a trial's measured value (its user
    attributes ``attrs``) minus the cap; a trial never trained (its architecture could not
    meet the cap) violates them."""
    return {k: float(attrs[CAP_ATTR[k]]) - v if CAP_ATTR[k] in attrs else 1.0
            for k, v in caps.items()}


def feasible(trial, caps: dict) -> bool:
    return all(c <= 0 for c in constraints(trial.user_attrs, caps).values())


def sampler(startup: int, seed: int):
    """Multivariate TPE over the conditional space; it reads each trial's constraints."""
    optuna = require()
    return optuna.samplers.TPESampler(n_startup_trials=startup, multivariate=True, group=True,
                                      seed=seed)


def objective(setup, curves, pruning: bool):
    """The function each Optuna trial runs (`pakd.tune.trial.run`), its record kept as the
    trial's user attributes."""
    optuna = require()
    from .trial import Infeasible, run

    def keep(trial, rec: dict) -> None:
        for k, v in rec.items():
            trial.set_user_attr(k, v)
        for k, v in constraints(rec, setup.caps).items():
            trial.set_constraint(k, v)

    def fn(trial):
        params = setup.space.sample(trial, setup.budget)
        c = Curves(curves, pruning)
        try:
            rec = run(setup, params, report=c.report, should_stop=c.should_stop)
        except Infeasible as e:
            keep(trial, e.args[1])
            raise optuna.TrialPruned(f"not trained: {e.args[0]}") from None
        except BaseException:
            c.end(None, "FAIL")
            raise
        keep(trial, rec)
        if rec["pruned"]:
            c.end(None, "PRUNED")
            raise optuna.TrialPruned(f"stopped after {rec['epochs_run']} epochs: valid "
                                     "NDCG@10 below the median of finished trials")
        c.end(rec["valid"]["ndcg@10"], "COMPLETE")
        return rec["valid"]["ndcg@10"], rec["valid"]["rmse"], rec[setup.objective]
    return fn


def optimize(setup, url: str, name: str, *, n_trials: int | None, timeout: float | None,
             seed: int, callbacks=()) -> None:
    """Run trials of study ``name`` (in the storage at ``url``) in this process until
    ``n_trials`` or ``timeout``."""
    tune = setup.cfg.tune
    study = require().load_study(study_name=name, storage=open_storage(url),
                                 sampler=sampler(tune.startup, seed))
    curves = curves_study(open_storage(url, heartbeat=False), name, tune.prune_startup,
                          tune.prune_warmup)
    study.optimize(objective(setup, curves, tune.pruner != "none"), n_trials=n_trials,
                   timeout=timeout, callbacks=list(callbacks))


def shares(remaining: int | None, jobs: int) -> list[int | None]:
    """Trials per worker: ``remaining`` split as evenly as it goes (None: no count)."""
    if remaining is None:
        return [None] * jobs
    return [remaining // jobs + (i < remaining % jobs) for i in range(jobs)
            if remaining // jobs + (i < remaining % jobs) > 0]


def in_processes(setup, url: str, name: str, counts: list, timeout: float | None,
                 seed: int, watch) -> None:
    """One spawned single-threaded process per entry of ``counts``, all sharing the study;
    ``watch`` polls the storage for progress meanwhile."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    spawn = mp.get_context("spawn")
    with ProcessPoolExecutor(len(counts), mp_context=spawn, initializer=_init_worker,
                             initargs=(setup,)) as ex:
        futs = [ex.submit(_worker, url, name, n, timeout, seed + 7919 * (i + 1))
                for i, n in enumerate(counts)]
        while True:
            done, pending = wait(futs, timeout=2.0, return_when=FIRST_EXCEPTION)
            watch.update()
            for f in done:
                f.result()            # a worker's error stops the study, as in one process
            if not pending:
                break


_STATE: dict = {}


def _init_worker(setup) -> None:
    import torch

    from ..runtime import setup_logging
    torch.set_num_threads(1)
    setup_logging(True)
    _STATE["setup"] = setup


def _worker(url, name, n_trials, timeout, seed) -> None:
    optimize(_STATE["setup"], url, name, n_trials=n_trials, timeout=timeout, seed=seed)


# ----------------------------------------------------------------------------- results

def size_of(trial, objective: str) -> float:
    return float(trial.user_attrs.get(objective, math.nan))


def valid_of(trial, metric: str) -> float:
    return float((trial.user_attrs.get("valid") or {}).get(metric, math.nan))


def complete_feasible(study, caps: dict) -> list:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and t.values is not None and feasible(t, caps)]


def pareto(trials: list) -> list:
    """Trials no other trial beats on every objective (NDCG@10 up, RMSE and size down)."""
    def key(t):
        return (-t.values[0], t.values[1], t.values[2])

    def dominates(a, b):
        ka, kb = key(a), key(b)
        return all(x <= y for x, y in zip(ka, kb)) and ka != kb
    return sorted([t for t in trials if not any(dominates(o, t) for o in trials)],
                  key=lambda t: t.values[2])


def choose(trials: list, tolerance: float) -> tuple[object | None, str]:
    """The chosen trial among feasible complete ``trials``, on the valid part: the best
    NDCG@10 among those whose RMSE is at most (1 + ``tolerance``) x the first trial's (the
    run's own settings), ties to the lower RMSE and size; without that trial, the best
    NDCG@10 of all."""
    if not trials:
        return None, "no trial finished within the caps"
    ref = next((t for t in trials if t.user_attrs.get("reference")), None)
    pick = (lambda ts: max(ts, key=lambda t: (t.values[0], -t.values[1], -t.values[2])))
    if ref is None:
        best = pick(trials)
        return best, (f"the best valid NDCG@10 of the feasible trials (the first trial, the "
                      f"run's own settings, did not finish within the caps): trial {best.number}")
    bound = (1 + tolerance) * ref.values[1]
    best = pick([t for t in trials if t.values[1] <= bound])
    return best, (f"the best valid NDCG@10 among feasible trials whose valid RMSE is at most "
                  f"{1 + tolerance:g} x that of trial {ref.number} (the run's own settings, "
                  f"{ref.values[1]:.4f}): trial {best.number}")


def row(t, objective: str) -> dict:
    """One trial as a table row."""
    a = t.user_attrs
    return {"trial": t.number, "state": t.state.name.lower(), "reference": bool(a.get("reference")),
            "kind": a.get("kind") or t.params.get("distill.student"),
            "method": a.get("method"), "params": a.get("params"), "bytes": a.get("bytes"),
            "latency_ms": a.get("latency_ms"), "target_params": a.get("target_params"),
            "valid_ndcg@10": valid_of(t, "ndcg@10") if a.get("valid") else None,
            "valid_rmse": valid_of(t, "rmse") if a.get("valid") else None,
            "epochs_run": a.get("epochs_run"), "seconds": a.get("seconds"),
            "reason": a.get("reason"), "settings": dict(t.params)}


# ----------------------------------------------------------------------------- progress

@dataclass
class Watch:
    """Progress of a study: trials done (of the target), the best so far by the choice
    rule, and the time left; one log line per finished trial."""
    study: object
    caps: dict
    objective: str
    target: int | None
    deadline: float | None
    jobs: int
    tolerance: float
    quiet: bool

    def __post_init__(self):
        self.start = time.perf_counter()
        self.seen = {t.number for t in self.study.get_trials(deepcopy=False)
                     if t.state.is_finished()}
        self.base = len(finished(self.study))
        self.bar = progress(total=self.target or None, initial=self.base, desc="trials",
                            quiet=self.quiet, unit="trial")
        self.times: list[float] = []

    def __call__(self, study=None, trial=None) -> None:     # an Optuna callback, too
        self.update()

    def update(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        best, _ = choose(complete_feasible(self.study, self.caps), self.tolerance)
        done = self.base + len(self.times)
        for t in trials:
            if t.state.is_finished() and t.number not in self.seen:
                self.seen.add(t.number)
                if t.state.name in FINISHED:
                    self.times.append(float(t.user_attrs.get("seconds") or 0.0))
                    done += 1
                self._log(t, done, best)
        self.bar.n = done
        left = self.left(done)
        self.bar.set_postfix_str(
            (f"best NDCG@10 {best.values[0]:.4f} (trial {best.number})" if best else "no best "
             "yet") + (f", ~{_duration(left)} left" if left is not None else ""), refresh=True)

    def left(self, done: int) -> float | None:
        """Seconds left: the deadline's, or the remaining trials at the mean pace so far."""
        now = time.perf_counter()
        out = None if self.deadline is None else max(0.0, self.deadline - now)
        if self.target and any(self.times):
            pace = sum(self.times) / len(self.times) / max(1, self.jobs)
            est = max(0, self.target - done) * pace
            out = est if out is None else min(out, est)
        return out

    def _log(self, t, done: int, best) -> None:
        a = t.user_attrs
        of = f"/{self.target}" if self.target else ""
        if t.state.name == "COMPLETE":
            what = (f"{a.get('kind')} {a.get('method')}, {a.get('params', 0):,} parameters, "
                    f"{a.get('bytes', 0):,} bytes, {a.get('latency_ms', math.nan):.3f} ms; valid "
                    f"NDCG@10 {t.values[0]:.4f}, RMSE {t.values[1]:.4f}"
                    + ("" if feasible(t, self.caps) else " - over the cap"))
        elif t.state.name == "PRUNED":
            what = "pruned: " + (a.get("reason") or f"stopped after {a.get('epochs_run')} "
                                 "epochs (valid NDCG@10 below the median)")
        else:
            what = t.state.name.lower()
        left = self.left(done)
        log.info("trial %d%s (%d%s done): %s (%.0fs); best so far %s%s", t.number,
                 " [run's settings]" if a.get("reference") else "", done, of, what,
                 float(a.get("seconds") or 0),
                 f"trial {best.number} (NDCG@10 {best.values[0]:.4f})" if best else "none",
                 f"; ~{_duration(left)} left" if left is not None else "")

    def close(self) -> None:
        self.bar.close()


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"
