"""The students a sweep trains, built from the run's settings and data.

- the default ``tower_student`` (`pakd.models.tower`): its item rows in ``student.buckets``
  popularity buckets, the train history it builds users from;
- ``lightweight_model``, the earlier student: ID rows for the most rated items holding
  ``lightweight.item_coverage`` of the train ratings, the rest side fields;
- a copy of a trained member;
- `mf_of_size`: the labels-only plain matrix factorisation of a given size.
Sizes are measured against the origin report's three members (`origin_params`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import LIGHTWEIGHT, STUDENT, TEACHERS, arch_of
from ..data.encoding import Encoded
from ..models import build
from ..models.base import RecModel
from ..models.student import ITEM_ROWS, item_row_table
from ..models.tower import tower_tables


def make_student(cfg, enc: Encoded, kind: str | None = None,
                 member: Path | None = None) -> RecModel:
    """A fresh dense student of ``kind`` (default: the run's ``distill.student``), or, for a
    member kind, a copy of the trained member saved at ``member``."""
    kind = kind or cfg.distill.student
    mean = float(enc.parts["train"].rating.mean())
    if kind == STUDENT:
        arch, tables = tower_arch(cfg, enc)
        return build(STUDENT, enc.schema, arch, tables=tables, rating_mean=mean)
    if kind == LIGHTWEIGHT:
        arch = lightweight_arch(cfg, enc)
        return build(LIGHTWEIGHT, enc.schema, arch, tables=lightweight_tables(enc, arch),
                     rating_mean=mean)
    from ..models import load
    return load(member)[0].train()


def from_scratch(reference: RecModel, enc: Encoded, seed: int) -> RecModel:
    """A student with ``reference``'s final architecture - for the tower, the same item rows,
    table columns and space dimensions - freshly initialised from ``seed``: the baselines
    that train a pruned architecture without pruning (scratch, final_kd)."""
    torch.manual_seed(seed)
    if reference.kind == STUDENT:
        new = reference.rebuilt(reference.arch())
        params = {n for n, _ in new.named_parameters()}
        new.load_state_dict({k: v for k, v in reference.state_dict().items()
                             if k not in params}, strict=False)
        return new.train()
    mean = float(enc.parts["train"].rating.mean())
    arch = reference.arch()
    return build(reference.kind, enc.schema, arch, tables=lightweight_tables(enc, arch),
                 rating_mean=mean)


def tower_arch(cfg, enc: Encoded) -> tuple[dict, dict]:
    """(architecture, tables) of the dense tower student for the run's data."""
    s = cfg.student
    tables, data_arch = tower_tables(enc, s.buckets, s.user_side == "table")
    arch = {"dim": s.dim, "rank_dims": s.rank_dims, "rate_dims": s.rate_dims,
            "hidden": list(s.mlp), "user_side": s.user_side, "alpha": s.alpha, **data_arch}
    if s.user_side == "table":
        arch["user_dims"] = s.dim
    return arch, tables


def lightweight_arch(cfg, enc: Encoded) -> dict:
    """The lightweight student's architecture: the configured one, with ``item_rows`` the
    fewest most-rated items whose train ratings reach ``item_coverage`` of all (0: every
    item)."""
    counts = train_counts(enc)
    share = (torch.sort(counts, descending=True).values.cumsum(0).double()
             / max(1, int(counts.sum())))
    rows = int((share < cfg.lightweight.item_coverage - 1e-12).sum()) + 1
    return {**arch_of(cfg.lightweight, LIGHTWEIGHT), "item_rows": rows if rows < enc.n_items else 0}


def lightweight_tables(enc: Encoded, arch: dict) -> dict:
    """The token tables a lightweight student of ``arch`` reads: the data's, plus which
    items own factor rows when ``item_rows`` limits them (chosen by train counts)."""
    rows = arch.get("item_rows", 0)
    if not rows:
        return enc.tables
    return {**enc.tables, ITEM_ROWS: item_row_table(train_counts(enc), rows)}


def train_counts(enc: Encoded) -> torch.Tensor:
    """Train ratings per item."""
    return torch.bincount(enc.parts["train"].item, minlength=enc.n_items)


def mf_of_size(enc: Encoded, params: int, rating_mean: float) -> RecModel:
    """A plain matrix factorisation (the lightweight model on IDs alone, no MLP) with rating
    and ranking factors of equal width, the width giving the parameter count nearest
    ``params`` without exceeding it (at least one factor)."""
    def make(k):
        return build(LIGHTWEIGHT, enc.schema, {"factors": k, "rank_factors": k, "hidden": [],
                                               "side_fields": False},
                     tables=enc.tables, rating_mean=rating_mean)
    per_factor = make(2).n_params() - make(1).n_params()
    base = make(1).n_params() - per_factor
    k = max(1, (params - base) // per_factor)
    return make(k)


def origin_params(cfg, schema) -> int:
    """Parameters of the origin report's three members (svd + xdeepfm + autoint) in the
    run's architectures, trained or not: the yardstick of the size budgets, however large
    the actual teacher is (EASE alone holds items^2 weights)."""
    return sum(build(n, schema, arch_of(getattr(cfg, n), n)).n_params() for n in TEACHERS)
