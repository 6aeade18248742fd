"""The sizes a tuning study works in: the smallest student its space can make (a cap below
it is refused), the budget's range from there to the cap, and the first trial's budget."""
from __future__ import annotations

from ..config import RunConfig
from ..data.encoding import Encoded
from ..distill import budgets as B
from ..distill.students import make_student, origin_params
from ..errors import PakdError
from . import study as S
from .space import Space, apply, as_settings, bytes_bound, least_model, saved_bytes
from .trial import latency_ms


def smallest_students(cfg: RunConfig, enc: Encoded, space: Space, latency: bool) -> dict:
    """kind -> the smallest student the space can make of it (narrowest settings, pruned
    to one unit per group and the lowest floor): its parameters, the bytes a cap must allow
    for it (`bytes_bound`: what pruning guarantees; ``saved_bytes`` is what it measures),
    its latency (when a latency cap needs it), and the settings that make it."""
    out = {}
    for kind, s in space.smallest().items():
        dense = make_student(apply(cfg, as_settings(s)), enc)
        small = least_model(dense, s["distill.group_floor"])
        out[kind] = {"params": small.n_params(), "bytes": bytes_bound(dense, small.n_params()),
                     "saved_bytes": saved_bytes(small), "settings": s,
                     "latency_ms": (latency_ms(small, enc.n_users, cfg.tune.latency_seconds)
                                    if latency else None)}
    return out


def check_caps(caps: dict, smallest: dict) -> None:
    """A cap below the smallest student the space can make is refused, naming it."""
    for name, value in caps.items():
        attr = S.CAP_ATTR[name]
        kind, least = min(((k, v) for k, v in smallest.items() if v[attr] is not None),
                          key=lambda kv: kv[1][attr])
        if value < least[attr]:
            s = least["settings"]
            desc = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in s.items()
                             if k != "distill.student")
            unit = {"params": "parameters", "bytes": "bytes", "latency_ms": "ms"}[attr]
            raise PakdError(
                f"{S.CAP_FLAG[name]} {value:g} is below the smallest student this search can "
                f"make: a {kind} ({desc}) pruned to one unit per group keeps "
                f"{least['params']:,} parameters (a cap must allow {least['bytes']:,} bytes "
                f"for it; it saves to {least['saved_bytes']:,})"
                + (f" and ranks a user's catalogue in {least['latency_ms']:.3f} ms"
                   if least["latency_ms"] is not None else "")
                + f". Give {S.CAP_FLAG[name]} {least[attr]:g} {unit} or more, or narrow the "
                "space (--tune-dim, --tune-factors, --tune-kinds)")


def budget_range(cfg: RunConfig, enc: Encoded, space: Space, smallest: dict, unit: str,
                 cap: float | None) -> tuple[int, int]:
    """The budget's range in ``unit``: from the smallest student to the cap (without a size
    cap: to the largest dense student of the space)."""
    lo = min(v[unit] for v in smallest.values())
    if cap is not None:
        return int(lo), int(cap)
    hi = max(make_student(apply(cfg, as_settings(s)), enc).n_params() - 1
             for s in space.largest().values())
    return int(lo), int(max(lo, hi))


def reference_budget(cfg: RunConfig, enc: Encoded, budget: tuple[int, int],
                     cap: float | None) -> int:
    """The first trial's budget: the cap, or without a size cap the run's smallest budget
    (`distill.budgets`) for its own student."""
    if cap is not None:
        return int(cap)
    dense = make_student(cfg, enc)
    origin = origin_params(cfg, enc.schema)
    t = min(B.parse(b).target(dense.n_params(), origin) for b in cfg.distill.budgets)
    return int(min(max(t, budget[0]), budget[1]))
