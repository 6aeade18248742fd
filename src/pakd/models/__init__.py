"""Models: the `RecModel` interface, the teachers, the student and the ensemble.

`build(kind, schema, arch, ...)` makes any of them from plain data (entries ``arch`` leaves
out come from `pakd.config.defaults.ARCH`); `save` / `load` write and read weights
(safetensors) plus a JSON architecture config - never a pickled object.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic import atomic_write_bytes, atomic_write_text
from ..config.defaults import ARCH
from ..data.schema import Schema
from ..errors import PakdError
from ..limits import input_problem
from .checks import check_against_weights, read_config
from .als import ALS
from .autoint import AutoInt
from .ease import EASE
from .knn import InterpolatedKNN, ItemKNN, UserKNN
from .base import FieldEmbedding, Group, Output, RecModel
from .lightgcn import LightGCN, graph_tables
from .sasrec import SASRec, sequence_tables
from .student import LightweightStudent
from .svd import SVD
from .tower import TowerStudent
from .xdeepfm import XDeepFM

KINDS: dict[str, type[RecModel]] = {
    "svd": SVD, "xdeepfm": XDeepFM, "autoint": AutoInt, "ease": EASE, "als": ALS,
    "lightweight_model": LightweightStudent, "tower_student": TowerStudent,
    "lightgcn": LightGCN, "sasrec": SASRec, "knn": ItemKNN, "uknn": UserKNN,
    "knn_interp": InterpolatedKNN,
}
# members built over data of their own beside the token tables (the train graph, the
# histories in time order): kind -> enc -> (tables, architecture entries)
DATA_TABLES = {"lightgcn": graph_tables, "sasrec": sequence_tables}

__all__ = ["KINDS", "RecModel", "Output", "Group", "FieldEmbedding", "SVD", "XDeepFM",
           "AutoInt", "EASE", "ALS", "ItemKNN", "UserKNN", "InterpolatedKNN",
           "LightweightStudent", "TowerStudent", "LightGCN", "SASRec",
           "build", "build_on", "save", "load"]


def build(kind: str, schema: Schema, arch: dict | None = None, *, tables=None,
          rating_mean: float = 0.0) -> RecModel:
    if kind not in KINDS:
        raise PakdError(f"unknown model {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind](schema, rating_mean=rating_mean, tables=tables,
                       **{**ARCH[kind], **(arch or {})})


def build_on(kind: str, enc, arch: dict | None = None, *, rating_mean: float = 0.0) -> RecModel:
    """`build` over an encoded split: the token tables, and for the members that need them
    the data they are built over (`DATA_TABLES`)."""
    tables, data_arch = (DATA_TABLES[kind](enc) if kind in DATA_TABLES else (enc.tables, {}))
    return build(kind, enc.schema, {**(arch or {}), **data_arch}, tables=tables,
                 rating_mean=rating_mean)


def save(model: RecModel, stem: str | Path, meta: dict | None = None) -> Path:
    """Write ``<stem>.safetensors`` (weights and token tables) and ``<stem>.json`` (kind,
    architecture, schema, ``meta``), each atomically."""
    stem = Path(stem)
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), st_save(sd))
    cfg = {"kind": model.kind, "arch": model.arch(), "schema": model.schema.to_dict(),
           "params": model.n_params(), **(meta or {})}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(cfg, indent=2) + "\n")
    return stem.with_suffix(".safetensors")


def load(stem: str | Path) -> tuple[RecModel, dict]:
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    cfg_path, w_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for p in (cfg_path, w_path):
        if not p.is_file():
            problem = input_problem(p, "model file")
            if problem is not None and "not found" not in problem.problem:
                raise problem
            raise PakdError(f"{p} not found; train or distill the model first")
    again = "train or distill it again"
    cfg = read_config(cfg_path)
    # every tensor the config implies is compared with the weights file's header first:
    # a config edited to ask for a huge layer is refused before anything is allocated
    check_against_weights(cfg, cfg_path, w_path,
                          lambda kind, schema, arch: build(kind, Schema.from_dict(schema), arch))
    try:
        schema = Schema.from_dict(cfg["schema"])
        model = build(cfg["kind"], schema, cfg["arch"])
    except PakdError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:   # JSON, keys, arch
        raise PakdError(f"{cfg_path} is not a model configuration pakd can read "
                        f"({type(e).__name__}: {e}); {again}") from None
    try:
        sd = st_load(w_path.read_bytes())   # safetensors only: nothing is ever unpickled
    except Exception as e:                  # truncated, tampered or not safetensors at all
        raise PakdError(f"{w_path} is not a readable safetensors file ({type(e).__name__}: "
                        f"{str(e)[:200]}); it may be truncated or tampered with; {again}") from None
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise PakdError(f"{w_path} does not match its architecture in {cfg_path} (saved by "
                        f"another pakd version?); {again}.\n{e}") from None
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PakdError(f"{w_path} holds non-finite weights (NaN or inf) in {', '.join(bad[:5])}: "
                        f"the model would answer nonsense; {again}")
    wrong = _bad_indices(sd, schema, cfg["arch"])
    if wrong:
        raise PakdError(f"{w_path} holds index tables out of their range ({wrong}): the file "
                        f"is damaged or was edited; {again}")
    model.eval()
    return model, cfg


def _bad_indices(sd: dict, schema: Schema, arch: dict) -> str | None:
    """The first integer table whose entries cannot index what they point into: field token
    tables (0 = padding .. vocabulary - 1), the student's item rows and EASE's history (CSR
    of the catalogue)."""
    vocab = {f.name: f.vocab_size for f in schema.fields}
    if arch.get("item_rows"):
        vocab["item_rows"] = int(arch["item_rows"]) + 1
    for k, v in sd.items():
        if v.is_floating_point() or not v.numel():
            continue
        leaf = k.rsplit(".", 1)[-1]
        if leaf.startswith("tab_") and leaf[4:] in vocab:
            if int(v.min()) < 0 or int(v.max()) >= vocab[leaf[4:]]:
                return f"{k} outside 0..{vocab[leaf[4:]] - 1}"
        elif leaf == "hist_items" and (int(v.min()) < 0 or int(v.max()) >= schema.n_items):
            return f"{k} outside 0..{schema.n_items - 1}"
        elif leaf == "hist_indptr":
            ok = (int(v[0]) == 0 and bool((v[1:] >= v[:-1]).all())
                  and int(v[-1]) == sd.get(k.replace("hist_indptr", "hist_items"), v).numel())
            if not ok:
                return f"{k} is not a valid row index"
    return None
