"""The one training loop: every model pakd trains step by step goes through `Trainer`.

    Trainer(model, objective, settings, callbacks).fit(data)

The loop draws the objective's batches, lets it backpropagate each, steps AdamW and asks the
objective to validate after each epoch; everything else is a callback: the best epoch on
valid and early stopping (`BestEpoch`), checkpoints and resume (`Checkpoint`), progress bars
(`Progress`), torchrun's gradient all-reduce (`AllReduce`) and pruning (`Pruning`). A
callback may replace the model (pruning does); the optimiser is then rebuilt for the new
shapes. ``settings`` is anything with ``epochs``, ``lr`` and ``weight_decay`` (a config
section, say).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.base import RecModel


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict          # the monitored figures at the kept epochs
    train_seconds: float
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    epoch_seconds: float = 0.0
    best_epochs: dict = field(default_factory=dict)


class Callback:
    """Hooks of the loop; each does nothing unless overridden."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer") -> None: ...
    def on_after_backward(self, trainer: "Trainer", batch) -> None: ...
    def on_step_end(self, trainer: "Trainer", batch) -> None: ...
    def on_epoch_sums(self, trainer: "Trainer", sums: np.ndarray) -> np.ndarray:
        return sums
    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...


class Trainer:
    def __init__(self, model: RecModel, objective, settings, callbacks=(), *, name: str = ""):
        self.model, self.objective, self.settings = model, objective, settings
        self.callbacks = list(callbacks)
        self.name = name or model.kind
        self.epoch = 0             # the epoch running (0-based)
        self.step = 0              # optimiser steps taken
        self.history: list[dict] = []
        self.seconds = 0.0         # training time (validation excluded)
        self.stop = False          # set by a callback to end training after this epoch
        self.final = True          # False while a callback still changes the architecture
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        extra = list(self.objective.parameters()) if hasattr(self.objective, "parameters") else []
        return torch.optim.AdamW(self.model.param_groups(self.settings.weight_decay, extra),
                                 lr=self.settings.lr)

    def replace_model(self, model: RecModel) -> None:
        """A callback changed the model (pruning): train the new one from here."""
        self.model = model
        self.optimizer = self.make_optimizer()

    def _each(self, hook: str, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def fit(self, data) -> FitResult:
        self._each("on_fit_start")
        for self.epoch in range(self.epoch, self.settings.epochs):
            if self.stop:
                break
            t0 = time.perf_counter()
            self.model.train()
            self._each("on_epoch_start")
            sums = None
            for batch in self.objective.batches(data, self.epoch):
                self.optimizer.zero_grad(set_to_none=True)
                stats = self.objective.backward(self.model, batch)
                self._each("on_after_backward", batch)
                self.optimizer.step()
                sums = stats if sums is None else sums + stats
                self.step += 1
                self._each("on_step_end", batch)
            for cb in self.callbacks:
                sums = cb.on_epoch_sums(self, sums)
            train_time = time.perf_counter() - t0
            self.seconds += train_time
            record = {"epoch": self.epoch + 1,
                      **self.objective.epoch_record(self.model, data, sums),
                      "seconds": train_time}
            self.history.append(record)
            self._each("on_epoch_end", record)
        self._each("on_fit_end")
        self.model.eval()
        return self.result()

    def result(self) -> FitResult:
        best = next((cb for cb in self.callbacks if hasattr(cb, "keeper")), None)
        n = len(self.history)
        if best is None or best.keeper is None:     # the architecture never became final
            return FitResult(0, {}, self.seconds, n, self.history, self.seconds / max(1, n))
        k = best.keeper
        return FitResult(max(k.epoch.values()) + 1, dict(k.best), self.seconds, n,
                         self.history, self.seconds / max(1, n),
                         best_epochs={t: e + 1 for t, e in k.epoch.items()})
