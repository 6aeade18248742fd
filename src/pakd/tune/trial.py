"""One trial: draw settings, distil the student, evaluate it on the valid part, measure it.

The data a trial sees has no test part (`without_test`): reading it is an error, so no
setting is ever chosen on the test part. The teacher's signals are computed once per study
process (`Setup`) and only the listwise temperature is re-applied per trial, from the
teacher's held score matrix (`with_temperature`: the same numbers `pakd distill` computes
at that temperature). Each epoch at the student's final size reports its valid NDCG@10 to
the pruner (`EpochReport`); a trial it stops ends as pruned.
"""
from __future__ import annotations

import contextlib

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..bench import latency_samples
from ..config import RunConfig
from ..data.encoding import Encoded
from ..distill.signals import TeacherSignals, teacher_distribution
from ..distill.students import make_student
from ..distill.sweep import Context, Job, train_student
from ..errors import PakdError
from ..evaluate import evaluate
from ..rundir import RunDir
from ..train import Callback
from .space import Space, apply, fit_budget, saved_bytes, settings_of

VALID_KEYS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10", "ndcg@10_rel4")


class PartsWithoutTest(dict):
    """The split's parts without the test part: asking for it is an error."""

    def __getitem__(self, part):
        if part == "test":
            raise PakdError("a tuning trial asked for the test part: trials choose on the "
                            "valid part only (pakd tune --final reads the test part once)")
        return super().__getitem__(part)


def without_test(enc: Encoded) -> Encoded:
    """``enc`` with its train and valid parts only (`PartsWithoutTest`)."""
    parts = PartsWithoutTest({k: v for k, v in enc.parts.items() if k != "test"})
    return Encoded(enc.schema, enc.user_ids, enc.item_ids, enc.tables, parts, enc.titles)


def with_temperature(signals: TeacherSignals, temperature: float) -> TeacherSignals:
    """The signals with the catalogue distribution at another listwise temperature; needs
    the teacher's held score matrix (``signals.scores``)."""
    if temperature == signals.temperature:
        return signals
    if signals.scores is None or signals.probs is None:
        raise PakdError("the temperature can only be tuned with the teacher's whole score "
                        "matrix held (raise --max-memory-gb), or narrow --tune-temperature "
                        "to the run's")
    probs, neg = teacher_distribution(signals.scores, signals.seen, temperature)
    return dataclasses.replace(signals, probs=probs, neg_entropy=neg, temperature=temperature)


@dataclass
class Setup:
    """What every trial of a study shares, built once per study process."""
    cfg: RunConfig            # the run's settings
    root: str                 # the run directory
    enc: Encoded              # train and valid parts only
    signals: TeacherSignals   # at the run's temperature
    teacher_valid: dict
    space: Space
    budget: tuple[int, int]   # the budget's range, in ``unit``
    unit: str                 # "params" or "bytes"
    cap: float | None         # the size cap in ``unit`` (None: no size cap)
    caps: dict                # every cap given (the sampler's constraints)
    objective: str            # the third objective: "params", "bytes" or "latency_ms"
    latency_seconds: float
    dense: str | None = None  # the run's trained dense student (its stem), if trials start there

    def start_of(self, cfg: RunConfig) -> str | None:
        """The saved student a student of ``cfg`` starts from (None: a fresh one)."""
        if cfg.distill.prune_from != "dense":
            return None
        if self.dense is None:
            raise PakdError("a trial drew a start from the dense student, which this run "
                            "does not hold")                    # pragma: no cover - a bug
        return self.dense

    def context(self, cfg: RunConfig, signals: TeacherSignals) -> Context:
        return Context(cfg, RunDir(self.root), self.enc, signals, self.teacher_valid, {})


class EpochReport(Callback):
    """Each epoch's valid NDCG@10 at the final size to ``report(value, step)``; ends
    training when ``should_stop()`` says so."""

    def __init__(self, report, should_stop):
        self.report, self.should_stop = report, should_stop
        self.step, self.stopped, self.curve = 0, False, []

    def on_epoch_end(self, trainer, record: dict) -> None:
        if not trainer.final:
            return
        value = float(record["valid_ndcg@10"])
        self.curve.append(value)
        self.report(value, self.step)
        self.step += 1
        if self.should_stop():
            self.stopped = trainer.stop = True


@contextlib.contextmanager
def one_thread():
    """One torch thread inside, the previous number restored after: every trial trains
    on one thread (`pakd.tune.study`), and on more threads float sums are split and
    ordered otherwise, so a student retrained on them would not match its trial to the
    last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def latency_ms(model, n_users: int, seconds: float) -> float:
    """Median milliseconds to rank one user's whole catalogue, on one thread."""
    with one_thread():
        return float(np.median(latency_samples(model, n_users, seconds=seconds)))


class Infeasible(Exception):
    """The drawn architecture cannot meet the cap: the trial is not trained."""


def run(setup: Setup, params: dict, *, report=lambda v, s: None,
        should_stop=lambda: False) -> dict:
    """Train and measure the student of ``params`` (a trial's drawn parameters): its
    record (sizes, valid metrics, curve, ``pruned`` when ``should_stop`` ended it).
    Raises `Infeasible` (with the record in ``args[1]``) before training when the
    architecture's smallest student is over the cap."""
    t0 = time.perf_counter()
    cfg, enc = setup.cfg, setup.enc
    kind_cfg = apply(cfg, settings_of(params, 1))
    dense = make_student(kind_cfg, enc)
    fit = fit_budget(dense, kind_cfg.distill.group_floor, params["budget"], setup.unit,
                     setup.cap)
    rec = {"dense_params": fit.dense, "least_params": fit.least}
    if fit.target is None:
        raise Infeasible(fit.reason, {**rec, "reason": fit.reason})
    tcfg = apply(cfg, settings_of(params, fit.target))
    signals = with_temperature(setup.signals, tcfg.distill.temperature)
    method = tcfg.distill.methods[0]
    cb = EpochReport(report, should_stop)
    res, _ = train_student(setup.context(tcfg, signals), Job(method, str(fit.target),
                                                             fit.target),
                           setup.start_of(tcfg), callbacks=[cb])
    model = res.model
    rec.update(target_params=fit.target, params=model.n_params(), bytes=saved_bytes(model),
               latency_ms=latency_ms(model, enc.n_users, setup.latency_seconds),
               kind=model.kind, method=method, curve=cb.curve, epochs_run=len(res.history),
               best_epoch=res.best_epoch, train_seconds=res.train_seconds,
               pruned=cb.stopped, arch=model.arch())
    if not cb.stopped:
        got = evaluate(model, enc, "valid", **cfg.eval.kwargs())
        rec["valid"] = {k: got.get(k) for k in VALID_KEYS}
    rec["seconds"] = time.perf_counter() - t0
    return rec
