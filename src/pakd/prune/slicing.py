"""Remove structural units exactly.

A `Group` says which entries of which parameters each unit owns. Masking zeroes them in
place (the unit then contributes nothing); pruning slices them out and rebuilds a smaller
dense model of the same kind (its architecture from `Group.pruned_arch`), so the saved
student is really smaller and faster.
"""
from __future__ import annotations

import torch

from ..errors import PakdError
from .group import Group


def find_group(model, name: str) -> Group:
    for g in model.structure():
        if g.name == name:
            return g
    raise PakdError(f"{model.kind} has no prunable group {name!r}")


def removed_positions(group: Group, keep: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    """(parameter, dim) -> positions the units not kept own there."""
    drop = torch.nonzero(~keep).flatten()
    out: dict[tuple[str, int], list] = {}
    for pname, dim, idx in group.slices:
        pos = idx[drop].flatten()
        out.setdefault((pname, dim), []).append(pos[pos >= 0])
    return {k: torch.unique(torch.cat(v)) for k, v in out.items()}


class ParamCounter:
    """Exact parameter count of a model as units are removed one by one.

    Groups may share entries (a neuron's outgoing column is also part of the next layer's
    neurons' rows), and removing units slices whole positions along one dim of a tensor, so
    a tensor keeps prod_d (size_d - removed positions along d) entries.
    """

    def __init__(self, model, groups: list[Group] | None = None):
        self.groups = {g.name: g for g in (groups if groups is not None else model.structure())}
        self.shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        self.sizes = {n: _numel(s) for n, s in self.shapes.items()}
        self.removed: dict[tuple[str, int], set] = {}
        self.total = sum(self.sizes.values())

    def _recount(self, pname: str) -> None:
        n = 1
        for d, size in enumerate(self.shapes[pname]):
            n *= size - len(self.removed.get((pname, d), ()))
        self.total += n - self.sizes[pname]
        self.sizes[pname] = n

    def remove(self, group: str, unit: int) -> list:
        """Remove one unit; returns what `restore` needs to undo it."""
        added, touched = [], set()
        for pname, dim, pos in self.groups[group].owned(unit):
            s = self.removed.setdefault((pname, dim), set())
            for x in pos.tolist():
                if x not in s:
                    s.add(x)
                    added.append((pname, dim, x))
            touched.add(pname)
        for p in touched:
            self._recount(p)
        return added

    def restore(self, added: list) -> None:
        touched = set()
        for pname, dim, x in added:
            self.removed[(pname, dim)].discard(x)
            touched.add(pname)
        for p in touched:
            self._recount(p)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def params_after(model, keep: dict[str, torch.Tensor]) -> int:
    """Exact parameter count after removing the units not kept."""
    counter = ParamCounter(model)
    for name, k in keep.items():
        for u in torch.nonzero(~k.bool()).flatten().tolist():
            counter.remove(name, u)
    return counter.total


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


def unit_params(model, groups: list[Group] | None = None) -> dict[str, torch.Tensor]:
    """Parameters each unit owns, per group."""
    ones = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    return {g.name: group_scores(g, ones)
            for g in (groups if groups is not None else model.structure())}


@torch.no_grad()
def mask_units(model, group_name: str, keep: torch.Tensor):
    """Zero the entries owned by the units not kept (in place)."""
    group = find_group(model, group_name)
    params = dict(model.named_parameters())
    for (pname, dim), pos in removed_positions(group, keep.bool()).items():
        params[pname].index_fill_(dim, pos, 0.0)
    return model


@torch.no_grad()
def prune_units(model, group_name: str, keep: torch.Tensor):
    """A new, smaller model without the units of ``group_name`` where ``keep`` is False."""
    group = find_group(model, group_name)
    keep = keep.bool()
    if keep.shape != (group.units,):
        raise PakdError(f"keep mask for {group_name} needs {group.units} entries, got "
                        f"{tuple(keep.shape)}")
    if int(keep.sum()) < group.min_units:
        raise PakdError(f"cannot prune {group_name} below {group.min_units} unit(s)")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for (pname, dim), pos in removed_positions(group, keep).items():
        mask = torch.ones(sd[pname].shape[dim], dtype=torch.bool)
        mask[pos] = False
        sd[pname] = sd[pname].index_select(dim, torch.nonzero(mask).flatten()).contiguous()
    new = model.rebuilt(group.pruned_arch(model.arch(), keep))
    new = new.to(next(model.parameters()).dtype)
    for k, v in new.state_dict().items():
        if k not in sd or sd[k].shape != v.shape:
            raise RuntimeError(f"pruning {group_name}: {k} has shape "
                               f"{tuple(sd[k].shape) if k in sd else None}, expected {tuple(v.shape)}")
    new.load_state_dict(sd)
    new.train(model.training)
    return new


def prune_plan(model, plan: dict[str, torch.Tensor]):
    """Apply several groups' keep masks in turn (masks refer to the original units)."""
    for name, keep in plan.items():
        if not bool(keep.all()):
            model = prune_units(model, name, keep)
    return model
