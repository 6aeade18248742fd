"""A new item's side fields - a film's genres, year and tags - as the tokens the model was
trained on, so that a film nobody has rated yet is placed by what it is.

The vocabularies are the ones the encoding kept (`pakd.data.encoding`, ``Encoded.vocab``):
the sorted values of a multi-valued or categorical field, the bucket edges of a numeric
one. A saved student carries them in its catalogue once `pakd update` has written it;
before that they are rebuilt from the run the student was trained in.
"""
from __future__ import annotations

import math

from ..data.schema import FieldSpec, Schema
from ..errors import PakdError
from ..limits import quote, short

MULTI_SEP = "|"


class ItemFields:
    """The item side fields of one model with their vocabularies: ``tokens(features)``."""

    def __init__(self, vocab: dict[str, dict], schema: Schema):
        self.specs: dict[str, FieldSpec] = {f.name: f for f in schema.by_side("item")
                                            if f.name != "item_id"}
        missing = [n for n in self.specs if n not in vocab]
        if missing:
            raise PakdError(f"no vocabulary for the item field(s) {', '.join(missing)}: the "
                            "catalogue or run does not belong to this model")
        self.vocab = {n: vocab[n] for n in self.specs}
        self._pos: dict[str, dict[str, int]] = {}
        self._folded: dict[str, dict[str, int]] = {}
        for name, v in self.vocab.items():
            spec = self.specs[name]
            if v["kind"] == "numeric":
                size = len(v["edges"]) + 2
            else:
                size = len(v["values"]) + 1
                self._pos[name] = {str(t): k + 1 for k, t in enumerate(v["values"])}
                folded: dict[str, int] = {}
                for t, k in self._pos[name].items():   # case-insensitive when unambiguous
                    folded[t.lower()] = -1 if t.lower() in folded else k
                self._folded[name] = folded
            if size != spec.vocab_size:
                raise PakdError(f"the vocabulary of item field {name!r} has {size} tokens but "
                                f"the model's {spec.vocab_size}: the catalogue or run does not "
                                "belong to this model")

    def to_json(self) -> dict:
        return self.vocab

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def tokens(self, features: dict, *, what: str = "item") -> tuple[dict[str, list[int]],
                                                                      list[str]]:
        """({field: tokens}, values not in the vocabulary) of ``features`` (field -> value:
        a list or a '|'-separated string for multi-valued fields, a number for numeric
        ones). A field the model does not have, or a value of the wrong type, is refused;
        a value outside the vocabulary is skipped and reported."""
        if not isinstance(features, dict):
            raise PakdError(f"{what}: features must be an object {{field: value}}")
        out: dict[str, list[int]] = {}
        unknown: list[str] = []
        for name, value in features.items():
            spec = self.specs.get(str(name))
            if spec is None:
                raise PakdError(f"{what}: unknown feature {quote(str(name), 40)}; this model's item "
                                f"fields are {', '.join(self.specs) or 'none'}")
            v = self.vocab[spec.name]
            if value is None or (isinstance(value, (str, list)) and not value):
                continue
            if v["kind"] == "numeric":
                x = _number(value)
                if x is None:
                    raise PakdError(f"{what}: feature {spec.name} must be a number, got "
                                    f"{short(value)}")
                edges = v["edges"]
                out[spec.name] = [1 + sum(1 for e in edges if x >= e)]
                continue
            values = _values(value, multi=v["kind"] == "multi")
            if values is None:
                raise PakdError(f"{what}: feature {spec.name} must be text"
                                f"{' or a list of text' if v['kind'] == 'multi' else ''}, got "
                                f"{short(value)}")
            toks = []
            for t in values:
                k = self._pos[spec.name].get(t) or self._folded[spec.name].get(t.lower(), 0)
                if k > 0 and k not in toks:
                    toks.append(k)
                elif k <= 0:
                    unknown.append(f"{spec.name}={short(t)}")
            if toks:
                out[spec.name] = toks[:spec.max_len]
        return out, unknown


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _values(value, *, multi: bool) -> list[str] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        parts = value.split(MULTI_SEP) if multi else [value]
    elif isinstance(value, list) and multi and all(isinstance(x, str) for x in value):
        parts = value
    else:
        return None
    return [p.strip() for p in parts if p.strip()]


def item_fields_of(dep, vocab: dict | None = None) -> ItemFields | None:
    """The item fields of a deployable student: from ``vocab`` (its catalogue's), else
    rebuilt from its run's encoding; None when it has no item side fields."""
    schema = dep.model.schema
    if not [f for f in schema.by_side("item") if f.name != "item_id"]:
        return None
    if vocab:
        return ItemFields(vocab, schema)
    if dep.run is None:
        raise PakdError(f"{dep.path}: new items need the vocabularies of its side fields, "
                        "kept in a catalogue written by pakd update or in the run the model "
                        "was trained in; pass --run")
    from ..config import build_config, load_run_config
    from ..data import load_encoded
    cfg = build_config(base=load_run_config(dep.run.config))
    cfg.quiet = True
    return ItemFields(load_encoded(cfg, dep.run).vocab, schema)
