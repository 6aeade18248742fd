"""Remove structural units exactly.

A `Group` says which entries of which parameters each unit owns. Masking zeroes them in
place (the unit then contributes nothing); pruning slices them out and rebuilds a smaller
dense model of the same kind, so the saved student is really smaller and faster.
"""
from __future__ import annotations

import torch

from ..errors import PakdError
from ..models import rebuild
from ..models.base import Group, RecModel


def _group(model: RecModel, name: str) -> Group:
    for g in model.structure():
        if g.name == name:
            return g
    raise PakdError(f"{model.kind} has no prunable group {name!r}")


def _removed_positions(group: Group, keep: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    drop = torch.nonzero(~keep).flatten()
    out: dict[tuple[str, int], list] = {}
    for pname, dim, idx in group.slices:
        pos = idx[drop].flatten()
        out.setdefault((pname, dim), []).append(pos[pos >= 0])
    return {k: torch.unique(torch.cat(v)) for k, v in out.items()}


def params_after(model: RecModel, keep: dict[str, torch.Tensor]) -> int:
    """Exact parameter count after removing the units not kept (groups may share entries,
    e.g. a neuron's outgoing column is also part of the next layer's neurons' rows).

    Removing units slices whole positions along one dim of a tensor, so a tensor keeps
    prod_d (size_d - removed positions along d) entries.
    """
    groups = {g.name: g for g in model.structure()}
    removed: dict[tuple[str, int], set] = {}
    for name, k in keep.items():
        if bool(k.all()):
            continue
        for (pname, dim), pos in _removed_positions(groups[name], k.bool()).items():
            removed.setdefault((pname, dim), set()).update(pos.tolist())
    total = 0
    for pname, p in model.named_parameters():
        n = 1
        for d, size in enumerate(p.shape):
            n *= size - len(removed.get((pname, d), ()))
        total += n
    return total


def group_scores(group: Group, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-unit sum of ``values`` (e.g. F * theta^2) over the entries each unit owns."""
    score = torch.zeros(group.units, dtype=torch.float64)
    for pname, dim, idx in group.slices:
        v = values[pname].double()
        other = [d for d in range(v.dim()) if d != dim]
        per_pos = v.sum(other) if other else v
        safe = idx.clamp(min=0)
        score += torch.where(idx >= 0, per_pos[safe], torch.zeros((), dtype=torch.float64)).sum(1)
    return score


@torch.no_grad()
def mask_units(model: RecModel, group_name: str, keep: torch.Tensor) -> RecModel:
    """Zero the entries owned by the units not kept (in place)."""
    group = _group(model, group_name)
    params = dict(model.named_parameters())
    for (pname, dim), pos in _removed_positions(group, keep.bool()).items():
        params[pname].index_fill_(dim, pos, 0.0)
    return model


@torch.no_grad()
def prune_units(model: RecModel, group_name: str, keep: torch.Tensor) -> RecModel:
    """A new, smaller model without the units of ``group_name`` where ``keep`` is False."""
    group = _group(model, group_name)
    keep = keep.bool()
    if keep.shape != (group.units,):
        raise PakdError(f"keep mask for {group_name} needs {group.units} entries, got {tuple(keep.shape)}")
    if int(keep.sum()) < group.min_units:
        raise PakdError(f"cannot prune {group_name} below {group.min_units} unit(s)")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for (pname, dim), pos in _removed_positions(group, keep).items():
        size = sd[pname].shape[dim]
        mask = torch.ones(size, dtype=torch.bool)
        mask[pos] = False
        sd[pname] = sd[pname].index_select(dim, torch.nonzero(mask).flatten()).contiguous()
    new = rebuild(model, model.pruned_arch(group_name, keep))
    new = new.to(next(model.parameters()).dtype)
    want = new.state_dict()
    for k, v in want.items():
        if k not in sd or sd[k].shape != v.shape:
            raise RuntimeError(f"pruning {group_name}: {k} has shape "
                               f"{tuple(sd[k].shape) if k in sd else None}, expected {tuple(v.shape)}")
    new.load_state_dict(sd)
    new.train(model.training)
    return new


def prune_plan(model: RecModel, plan: dict[str, torch.Tensor]) -> RecModel:
    """Apply several groups' keep masks in turn (masks refer to the original units)."""
    for name, keep in plan.items():
        if not bool(keep.all()):
            model = prune_units(model, name, keep)
    return model
