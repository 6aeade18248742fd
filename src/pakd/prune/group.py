"""`Group`: one kind of prunable unit of a model, and everything a unit owns.

A model lists its groups in `RecModel.structure()`. A group names
- ``slices``: the parameter entries each unit owns, so removing a unit is exact;
- ``acts``: where each unit's activations appear, for mask-gradient importance;
- ``arch``: the architecture entries its unit count sets, so the pruned architecture is
  derived here, once, for every model (no parsing of group names);
- ``hidden``: the positions of the model's hidden representation each unit owns (None:
  pruning the group leaves the hidden width alone), for feature distillation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ArchEntry:
    """An architecture entry a group's kept units set: ``arch[key]`` (``index`` None) or
    ``arch[key][index]``, to the number of kept units among units ``start:stop``."""
    key: str
    index: int | None = None
    start: int = 0
    stop: int | None = None


@dataclass
class Group:
    """A kind of prunable unit and the parameter entries each unit owns.

    ``slices``: (parameter name, dim, index) with index a long tensor [units, k]: unit u owns
    positions ``index[u]`` of that parameter along ``dim`` (-1 entries pad ragged rows). A
    unit whose owned entries are all zero contributes nothing downstream, so zeroing
    (masking) and physically slicing a unit out give the same outputs.
    ``acts``: (module name, index [units, k]) along the last dim of that module's output; a
    unit whose activations are zeroed is removed, so sum(activation * d loss / d activation)
    is the gradient of a mask on the unit.
    ``degree``: how the model's output scales with such a mask m on every act: m^degree.
    2 for a factor dimension on both sides of a dot product (user and item rows gated by the
    same m), 1 otherwise; the mask Taylor predictor (`pakd.fisher.damage.mask_taylor`)
    expands in m^degree, in which the unit's contribution is linear.
    """
    name: str
    kind: str              # embedding_dim | mf_factor | cin_map | attention_head | neuron
    units: int
    slices: list[tuple[str, int, torch.Tensor]] = field(default_factory=list)
    min_units: int = 1     # never prune below this
    acts: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    arch: list[ArchEntry] = field(default_factory=list)
    hidden: torch.Tensor | None = None
    floor: bool = True     # a group floor (`pakd.prune.select.floor_units`) applies
    degree: int = 1

    def owned(self, unit: int):
        for pname, dim, idx in self.slices:
            pos = idx[unit]
            yield pname, dim, pos[pos >= 0]

    def pruned_arch(self, arch: dict, keep: torch.Tensor) -> dict:
        """``arch`` after keeping only the units ``keep`` (bool [units])."""
        if not self.arch:
            raise ValueError(f"group {self.name} declares no architecture entry")
        out = dict(arch)
        for e in self.arch:
            n = int(keep[e.start:e.stop].sum())
            if e.index is None:
                out[e.key] = n
            else:
                lst = list(out[e.key]) if isinstance(out[e.key], (list, tuple)) else None
                if lst is None:
                    raise ValueError(f"{e.key} of {self.name} is not a list")
                lst[e.index] = n
                out[e.key] = lst
        return out

    def prefixed(self, prefix: str) -> "Group":
        """The same group inside a container module (``members.svd.`` ...)."""
        return Group(prefix + self.name, self.kind, self.units,
                     [(prefix + p, d, i) for p, d, i in self.slices], self.min_units,
                     [(prefix + m, i) for m, i in self.acts], [], None, degree=self.degree)
