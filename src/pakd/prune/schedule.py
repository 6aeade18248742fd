"""When to prune: the cubic sparsity schedule of Zhu & Gupta (2017).

After a share t of the pruning window the model has lost ``ratio * (1 - (1 - t)^3)`` of its
parameters: fast at first, while there is much to remove, then gently so training can
recover. `prune_steps` spreads the steps over the first ``until`` share of training.
"""
from __future__ import annotations


def cubic(step: int, total: int, ratio: float) -> float:
    """Share of parameters removed by ``step`` of a ``total``-step pruning window."""
    t = min(1.0, step / max(1, total))
    return ratio * (1 - (1 - t) ** 3)


def prune_steps(total_steps: int, until: float, steps: int) -> tuple[int, list[int]]:
    """(window length, the optimiser steps after which to prune)."""
    window = max(1, int(until * total_steps))
    return window, sorted({max(1, round(window * (k + 1) / steps)) for k in range(steps)})
