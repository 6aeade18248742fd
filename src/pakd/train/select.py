"""Choosing a setting on the valid part: the one helper every closed-form fit uses.

EASE's lambda, ALS's regularisation, the re-ranker's blend weight and the ensemble's
ranking weights all have no gradient to follow: each point of a grid is fitted, scored on
the valid part (the test part only reports), and the best kept. `best_on_grid` is that
loop - the first of equal scores wins, as `max` would pick it - and `best_on_simplex`
walks convex weights (a grid, then small moves) through it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Callable, Iterable

from ..runtime import log, progress


@dataclass
class Choice:
    """The chosen grid point, its valid score, and every point tried (in order)."""
    value: Any
    score: float
    history: list[dict] = field(default_factory=list)
    kept: Any = None       # what ``keep()`` returned right after the chosen point was scored


def best_on_grid(values: Iterable, score: Callable[[Any], float], *, label: str = "value",
                 keep: Callable[[], Any] | None = None, desc: str | None = None,
                 quiet: bool = True, name: str = "", figure: str = "ndcg@10",
                 minimise: bool = False) -> Choice:
    """Score every value in order and return the best (strictly better replaces, so ties
    keep the earlier point; higher is better, lower with ``minimise``). ``keep`` snapshots
    whatever the caller must restore for the chosen point (a model's weights after its fit);
    ``desc`` shows a progress bar; a ``name`` logs each point's valid ``figure``."""
    best: Choice | None = None
    history: list[dict] = []
    points = progress(values, desc=desc, quiet=quiet) if desc else values
    for value in points:
        t0 = time.perf_counter()
        s = score(value)
        history.append({label: value, f"valid_{figure}": s,
                        "seconds": time.perf_counter() - t0})
        if name:
            log.info("%s %s %g: valid %s %.4f (%.1fs)", name, label, value,
                     figure.upper() if figure == "rmse" else figure.replace("ndcg", "NDCG"), s,
                     history[-1]["seconds"])
        if best is None or (s < best.score if minimise else s > best.score):
            best = Choice(value, s, history, keep() if keep else None)
    if best is None:
        raise ValueError("best_on_grid needs at least one value")
    return best


def grid_edge(value, grid: Iterable) -> str | None:
    """"lower" or "upper" when ``value`` is the smallest or largest of a grid of two or
    more values, else None."""
    values = sorted(set(grid))
    if len(values) < 2:
        return None
    return "lower" if value == values[0] else "upper" if value == values[-1] else None


def note_edge(name: str, label: str, value, grid: Iterable) -> str | None:
    """Log a choice that a wider grid might beat (at an edge) or that was not a choice (one
    value given); returns `grid_edge`."""
    grid = list(grid)
    edge = grid_edge(value, grid)
    if len(set(grid)) == 1:
        log.info("%s: one %s given (%g), so it is used, not chosen on valid", name, label, value)
    elif edge:
        log.warning("%s: the best %s on valid, %g, is at the %s edge of the values tried (%s): "
                    "a wider grid might do better", name, label, value, edge,
                    ", ".join(f"{v:g}" for v in sorted(grid)))
    return edge


def simplex_grid(k: int) -> list[tuple]:
    """Every convex weight vector of ``k`` members on the grid of step 0.1 (up to three
    members) or 0.2 (more: the grid grows as steps^k)."""
    steps = 10 if k <= 3 else 5
    return [tuple(c / steps for c in combo) for combo in product(range(steps + 1), repeat=k)
            if sum(combo) == steps]


def best_on_simplex(names: list[str], score: Callable[[tuple], float],
                    quiet: bool = True, move: float = 0.05) -> tuple[tuple, float]:
    """The convex weights with the best ``score``: the best point of `simplex_grid`, then
    moves of ``move`` weight from one member to another while one improves. Each point is
    scored once (rounded to 6 decimals)."""
    k = len(names)
    seen: dict[tuple, float] = {}

    def at(w) -> float:
        key = tuple(round(x, 6) for x in w)
        if key not in seen:
            seen[key] = score(key)
        return seen[key]

    best_w = best_on_grid(simplex_grid(k), at, desc="fit ranking weights", quiet=quiet).value
    best_w = tuple(round(x, 6) for x in best_w)
    improved = True
    while improved:
        improved = False
        for i, j in product(range(k), repeat=2):
            if i == j or best_w[j] < move - 1e-9:
                continue
            w = list(best_w)
            w[i], w[j] = w[i] + move, w[j] - move
            if at(w) > seen[best_w] + 1e-12:
                best_w, improved = tuple(round(x, 6) for x in w), True
    return best_w, seen[best_w]
