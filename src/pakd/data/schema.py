"""The fields a feature-based model sees, and their vocabularies.

A `Schema` is plain data (it serialises into every saved model's config): an ordered list
of `FieldSpec`. The user and item IDs are fields like any other. Every field is looked up
through a token table of shape ``[n_users or n_items, max_len]``; token 0 is padding /
missing, so single-valued fields have max_len 1 and multi-valued fields are mean-pooled
over their non-zero tokens.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass
class FieldSpec:
    name: str
    side: Literal["user", "item"]
    kind: Literal["single", "multi"]
    vocab_size: int          # including the padding token 0
    max_len: int = 1
    source: str = ""          # "id", "categorical", "multi", "numeric (N buckets)"


@dataclass
class Schema:
    fields: list[FieldSpec]
    n_users: int
    n_items: int
    rating_min: float
    rating_max: float
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        d = dict(d)
        d["fields"] = [FieldSpec(**f) for f in d["fields"]]
        return cls(**d)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def by_side(self, side: str) -> list[FieldSpec]:
        return [f for f in self.fields if f.side == side]
