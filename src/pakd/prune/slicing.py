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
            if pname not in self.shapes:     # a buffer sliced with the unit: no parameters
                continue
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
        if pname not in values:              # a buffer sliced with the units
            continue
        v = values[pname].double()
        other = [d for d in range(v.dim()) if d != dim]
        per_pos = v.sum(other) if other else v
        if per_pos.numel() == 0:             # pruned to nothing along ``dim``: no unit owns
            continue                         # an entry here (indexing it would fail)
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
        if pname in params:                  # buffers (IDs, owners) stay as they are
            params[pname].index_fill_(dim, pos, 0.0)
    return model


def removed_hidden(model, keep: dict[str, torch.Tensor]) -> torch.Tensor:
    """Positions of ``model``'s hidden representation owned by the units the keep masks
    drop (groups whose units own none contribute nothing)."""
    groups = {g.name: g for g in model.structure()}
    parts = [groups[n].hidden[~k.bool()].flatten() for n, k in keep.items()
             if groups[n].hidden is not None and not bool(k.all())]
    return torch.unique(torch.cat(parts)) if parts else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def prune_units(model, group_name: str, keep: torch.Tensor):
    """A new, smaller model without the units of ``group_name`` where ``keep`` is False."""
    return prune_plan(model, {group_name: keep})


@torch.no_grad()
def prune_plan(model, plan: dict[str, torch.Tensor]):
    """A new, smaller model without the units each group's keep mask drops - all groups at
    once, every mask referring to the model's current units (groups may share entries: a
    model dimension owns a column of every table, a table's own columns are units too)."""
    groups = {g.name: g for g in model.structure()}
    removed: dict[tuple[str, int], list] = {}
    arch = model.arch()
    changed = False
    for name, keep in plan.items():
        group = groups.get(name)
        if group is None:
            raise PakdError(f"{model.kind} has no prunable group {name!r}")
        keep = keep.bool()
        if keep.shape != (group.units,):
            raise PakdError(f"keep mask for {name} needs {group.units} entries, got "
                            f"{tuple(keep.shape)}")
        if bool(keep.all()):        # nothing goes (a group another one emptied: a tower
            continue                # bucket whose last column's dimension went)
        if int(keep.sum()) < group.min_units:
            raise PakdError(f"cannot prune {name} below {group.min_units} unit(s)")
        changed = True
        for key, pos in removed_positions(group, keep).items():
            removed.setdefault(key, []).append(pos)
        if not hasattr(model, "arch_from_state"):
            arch = group.pruned_arch(arch, keep)
    if not changed:
        return model
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for (pname, dim), parts in removed.items():
        pos = torch.unique(torch.cat(parts))
        mask = torch.ones(sd[pname].shape[dim], dtype=torch.bool)
        mask[pos] = False
        sd[pname] = sd[pname].index_select(dim, torch.nonzero(mask).flatten()).contiguous()
    if hasattr(model, "arch_from_state"):
        arch = model.arch_from_state(sd)
    new = model.rebuilt(arch)
    new = new.to(next(model.parameters()).dtype)
    for k, v in new.state_dict().items():
        if k not in sd or sd[k].shape != v.shape:
            raise RuntimeError(f"pruning {', '.join(plan)}: {k} has shape "
                               f"{tuple(sd[k].shape) if k in sd else None}, expected {tuple(v.shape)}")
    new.load_state_dict(sd)
    new.train(model.training)
    return new
