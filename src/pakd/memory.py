"""Memory: the peak resident memory of each stage, and chunk sizes from a memory budget.

Peak RSS per stage: Linux keeps a process's high-water mark (VmHWM in /proc/self/status)
and lets the process reset it (writing 5 to /proc/self/clear_refs), so each stage's own
peak is measured, not the peak of everything before it. Elsewhere the lifetime peak
(``getrusage``) stands in, and ``per_stage`` says so.

Chunk sizes: work that needs a users x items block (full-catalogue scores, their masks
and the top-K selection) takes as many users at once as ``max_memory_gb`` allows, so
evaluation, re-ranking and distillation never build a users x items matrix of the whole
data set (a member's is cached only when it fits; without it, distillation keeps each
user's likeliest teacher items, `pakd.distill.signals.head_distribution`); a budget too
small for one user is refused with the setting to raise.
"""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import PakdError

_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")

# bytes held per (user, item) cell of a scored chunk in `pakd.metrics.topk_metrics`: the
# float32 scores and their masked copy, the seen and relevant masks, top_k's comparison
# masks and running counts (benchmarks/scale.py reports the evaluate stage's peak RSS
# against the budget)
BYTES_PER_CELL = 24
DEFAULT_BUDGET_GB = 4.0     # `EvalConfig.max_memory_gb`'s default
# share of the budget one block may take (the rest holds the model, the data and the
# per-user results)
BLOCK_SHARE = 0.5


def reset_peak() -> bool:
    """Start a new high-water mark; False where the system cannot (then peaks are
    lifetime peaks)."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """The peak resident memory since the last `reset_peak` (MB)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


@contextmanager
def stage(record: dict, name: str):
    """Time ``name`` and record its peak RSS: ``record[name] = {"seconds", "peak_rss_mb"}``."""
    exact = reset_peak()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        record[name] = {"seconds": time.perf_counter() - t0, "peak_rss_mb": round(peak_mb(), 1),
                        "per_stage": exact}


def user_chunk(n_items: int, max_memory_gb: float, *, n_users: int | None = None,
               setting: str = "--max-memory-gb") -> int:
    """Users per full-catalogue block under the budget (at least 1, at most ``n_users``)."""
    per_user = n_items * BYTES_PER_CELL
    chunk = int(max_memory_gb * 2**30 * BLOCK_SHARE // per_user)
    if chunk < 1:
        need = per_user / BLOCK_SHARE / 2**30
        raise PakdError(f"{setting} {max_memory_gb:g} is too small to score one user's "
                        f"{n_items:,} items (needs at least {need:.3g} GB): raise {setting}")
    return chunk if n_users is None else max(1, min(chunk, n_users))


def cache_entries(max_memory_gb: float) -> int:
    """The largest users x items float32 matrix worth caching whole under the budget."""
    return int(max_memory_gb * 2**30 * BLOCK_SHARE // 4)
