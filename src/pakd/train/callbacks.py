"""What the training loop does besides training, one callback each.

- `BestEpoch`: keeps the best weights by the objective's valid figures (each task its own
  best epoch when the model's outputs share no parameters), stops after ``patience`` epochs
  without improvement, restores the best weights at the end. It waits while another
  callback still changes the architecture (pruning).
- `Checkpoint`: writes the best weights at each improvement and the resumable state after
  every epoch; with ``resume`` it continues from that state.
- `Progress`: a progress bar per epoch.
- `AllReduce`: under torchrun, sums every step's gradients across processes (one
  all-reduce over a flat buffer) and the epoch's loss sums.
- `Pruning`: a `pakd.prune.Pruner` inside the loop - an observing criterion watches each
  step, the pruner removes units at its planned steps, the loop trains the smaller model
  from there, and listeners hear what went (``on_pruned``).
"""
from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..atomic import atomic_write_bytes
from ..models import save
from ..models.base import RecModel
from ..prune.pruner import Observer, Pruner
from ..runtime import log, progress
from .trainer import Callback, Trainer


class BestKeeper:
    """Keeps the best weights seen so far (lower figures are better).

    With ``per_task`` and a model whose rating and ranking outputs read disjoint parameters
    (`RecModel.task_params`), each task keeps the weights of its own best epoch: the rating
    side often peaks after a few epochs while the ranking side still improves, and one
    shared stopping point would sacrifice one of them. Otherwise one state is kept.
    """

    def __init__(self, model: RecModel, per_task: bool):
        self.split = model.task_params() if per_task else None
        self.keys = ["rating", "ranking"] if self.split else ["all"]
        self.best = {k: float("inf") for k in self.keys}
        self.epoch = {k: -1 for k in self.keys}
        self.state: dict[str, dict] = {}
        self.stale = 0

    def update(self, model: RecModel, figures: dict[str, float], epoch: int) -> bool:
        sd = model.state_dict()
        improved = False
        for k in self.keys:
            if figures[k] < self.best[k] - 1e-6:
                self.best[k], self.epoch[k], improved = figures[k], epoch, True
                names = self.split[k] if self.split else list(sd)
                self.state[k] = {n: sd[n].detach().clone() for n in names}
        self.stale = 0 if improved else self.stale + 1
        return improved

    def restore(self, model: RecModel) -> RecModel:
        for part in self.state.values():
            model.load_state_dict(part, strict=False)
        return model

    def to_dict(self) -> dict:
        return {"best": self.best, "epoch": self.epoch, "state": self.state, "stale": self.stale}

    def load_dict(self, d: dict) -> None:
        self.best, self.epoch, self.state, self.stale = d["best"], d["epoch"], d["state"], d["stale"]


class BestEpoch(Callback):
    """The best epoch on valid: ``figures(record, keeper)`` gives the figures to minimise
    from an epoch's record ({"rating", "ranking"} when each task keeps its own epoch, else
    {"all"}); ``per_task`` asks for the split where the model allows it."""

    def __init__(self, figures, patience: int, per_task: bool):
        self.figures, self.patience, self.per_task = figures, patience, per_task
        self.keeper: BestKeeper | None = None
        self.improved = False

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.improved = False
        if not trainer.final:
            return
        if self.keeper is None:            # from here on the architecture is final
            self.keeper = BestKeeper(trainer.model, self.per_task)
        self.improved = self.keeper.update(trainer.model, self.figures(record, self.keeper),
                                           trainer.epoch)
        if self.keeper.stale >= self.patience:
            trainer.stop = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.keeper is not None:
            self.keeper.restore(trainer.model)


class Checkpoint(Callback):
    """The best weights at ``stem`` (with ``meta``) whenever they improve, and the training
    state at ``state`` after every epoch; ``resume`` continues from that state."""

    def __init__(self, best: BestEpoch, stem: Path | None, state: Path | None,
                 resume: bool, meta: dict | None = None):
        self.best, self.stem, self.state, self.resume = best, stem, state, resume
        self.meta = meta or {}

    def on_fit_start(self, trainer: Trainer) -> None:
        if not (self.resume and self.state is not None and self.state.is_file()):
            return
        st = torch.load(self.state, weights_only=True)
        trainer.model.load_state_dict(st["model"])
        trainer.optimizer.load_state_dict(st["optim"])
        self.best.keeper = BestKeeper(trainer.model, self.best.per_task)
        self.best.keeper.load_dict(st["keeper"])
        trainer.epoch = int(st["epoch"]) + 1
        trainer.history, trainer.seconds = list(st["history"]), float(st["seconds"])
        trainer.stop = self.best.keeper.stale >= self.best.patience
        log.info("%s: resuming after epoch %d (best valid %s)", trainer.name, trainer.epoch,
                 self.best.keeper.best)

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if not distributed.is_main():
            return
        keeper = self.best.keeper
        if self.best.improved and self.stem is not None:
            best = keeper.restore(copy.deepcopy(trainer.model))
            save(best, self.stem, meta={**self.meta, "best_epoch": {
                k: e + 1 for k, e in keeper.epoch.items()},
                "valid": {k: v for k, v in record.items() if k.startswith("valid_")}})
        if self.state is not None:
            st = {"model": trainer.model.state_dict(), "optim": trainer.optimizer.state_dict(),
                  "epoch": trainer.epoch, "keeper": keeper.to_dict(), "history": trainer.history,
                  "seconds": trainer.seconds}
            buf = io.BytesIO()
            torch.save(st, buf)
            atomic_write_bytes(self.state, buf.getvalue())


class Progress(Callback):
    """A progress bar over each epoch's steps."""

    def __init__(self, quiet: bool, unit: str = "step"):
        self.quiet, self.unit, self.bar = quiet, unit, None

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.bar = progress(total=trainer.objective.steps_per_epoch(),
                            desc=f"{trainer.name} epoch {trainer.epoch + 1}",
                            quiet=self.quiet or not distributed.is_main(), unit=self.unit)

    def on_step_end(self, trainer: Trainer, batch) -> None:
        self.bar.update(1)

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.bar.close()


class AllReduce(Callback):
    """torchrun: every step's gradients summed across the processes, and the epoch's loss
    sums; the bytes sent per step go into the epoch's record."""

    def __init__(self):
        self.sent = 0

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.sent = 0

    def on_after_backward(self, trainer: Trainer, batch) -> None:
        self.sent += distributed.sum_gradients(trainer.model)

    def on_epoch_sums(self, trainer: Trainer, sums: np.ndarray) -> np.ndarray:
        return distributed.sum_(torch.from_numpy(sums)).numpy()

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if distributed.world() > 1:
            record.update(processes=distributed.world(),
                          allreduce_bytes_per_step=self.sent
                          / max(1, trainer.objective.steps_per_epoch()))


class Pruning(Callback):
    """The training-loop callback around a `Pruner`. ``listeners`` get
    ``on_pruned(old_model, new_model, keep)`` before the loop trains the new one."""

    def __init__(self, pruner: Pruner, listeners=()):
        self.pruner, self.listeners = pruner, list(listeners)
        imp = pruner.importance
        self.observer = imp if isinstance(imp, Observer) and not pruner.done else None

    def on_fit_start(self, trainer: Trainer) -> None:
        trainer.final = self.pruner.done
        self._attach(trainer)

    def _attach(self, trainer: Trainer) -> None:
        """Watch the current model (or stop watching: no observer left); an objective that
        runs the model several times a step tells the observer of each further call."""
        if self.observer is not None:
            self.observer.attach(trainer.model)
        if hasattr(trainer.objective, "observer"):
            trainer.objective.observer = self.observer

    def on_after_backward(self, trainer: Trainer, batch) -> None:
        if self.observer is not None:
            self.observer.observe(trainer.model, trainer.objective, batch)

    def on_step_end(self, trainer: Trainer, batch) -> None:
        if not self.pruner.due(trainer.step):
            return
        old = trainer.model
        new, sel = self.pruner.step(old, trainer.step)
        if sel is not None:
            for listener in self.listeners:
                listener.on_pruned(old, new, sel.keep)
            trainer.replace_model(new)
            log.debug("%s step %d: %s -> %s parameters", trainer.name, trainer.step,
                      f"{old.n_params():,}", f"{new.n_params():,}")
        if self.observer is not None:
            if self.pruner.done:        # importance restarts on each new model; after the
                self.observer.detach()  # last step it is not needed any more
                self.observer = None
            self._attach(trainer)
        trainer.final = self.pruner.done

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.observer is not None:
            self.observer.detach()
            self.observer = None
            self._attach(trainer)
