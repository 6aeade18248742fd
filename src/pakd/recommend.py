"""`pakd recommend`: top-K items for one user from a saved model, in the terminal (the
same lookup `pakd serve` answers over HTTP)."""
from __future__ import annotations

import numpy as np

from .deploy.deployable import load_deployable
from .deploy.graphs import TorchGraphs
from .errors import PakdError


def recommend(model_path: str, user: str, *, k: int = 10, run_dir: str | None = None,
              include_seen: bool = False) -> list[str]:
    if k < 1:
        raise PakdError(f"-k must be at least 1, got {k}")
    dep = load_deployable(model_path, run_dir=run_dir)
    u = dep.user_index(user)
    if u is None:
        raise PakdError(f"user {user} is not among this model's {len(dep.user_ids)} users")
    users = np.array([u], dtype=np.int64)
    seen = np.full((1, 1), -1, np.int64) if include_seen else dep.seen_padded(users)
    if include_seen:
        note = ""
    elif dep.run is None:
        note = " (no run directory found: seen items are not skipped; pass --run)"
    else:
        note = f" (skipping {len(dep.seen(u))} items seen in train/valid)"
    scores, top = TorchGraphs(dep.model, k).top(users, seen)
    lines = [f"top-{k} for user {dep.user_ids[u]}{note}:"]
    for rank, (i, s) in enumerate(zip(top[0], scores[0]), 1):
        if np.isfinite(s):
            lines.append(f"{rank:>3}. {dep.titles[int(i)]}  [item {dep.item_ids[int(i)]}]")
    return lines
