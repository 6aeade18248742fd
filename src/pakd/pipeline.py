"""The stages of a run, each reading the previous stage's artefacts from the run directory.

`pakd run` calls them in order; each CLI subcommand calls one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import data as data_mod
from .config import RunConfig
from .data.encoding import Encoded
from .data.splits import Split
from .runs import log


def stage_split(cfg: RunConfig, run_dir: Path) -> Split:
    t0 = time.perf_counter()
    ds = data_mod.load(cfg.data, quiet=cfg.quiet)
    split = data_mod.make_split(ds.ratings, method=cfg.split.method,
                                ratios=tuple(cfg.split.ratios), k=cfg.split.k, seed=cfg.seed)
    split.summary["dataset"] = ds.name
    path = split.write(run_dir)
    s = split.summary
    log.info("split %s (%s, seed %d): train %d / valid %d / test %d ratings; cold rows dropped: "
             "valid %d, test %d -> %s (%.1fs)", ds.name, s["method"], cfg.seed,
             s["rows"]["train"], s["rows"]["valid"], s["rows"]["test"],
             s["cold_dropped"]["valid"], s["cold_dropped"]["test"], path,
             time.perf_counter() - t0)
    return split


def stage_train(cfg: RunConfig, run_dir: Path, enc: Encoded | None = None) -> dict:
    from .teachers import train_members
    enc = enc or load_encoded(cfg, run_dir)
    return train_members(cfg, run_dir, enc)


def stage_ensemble(cfg: RunConfig, run_dir: Path, enc: Encoded | None = None) -> dict:
    from .teachers import stage_ensemble as _ens
    enc = enc or load_encoded(cfg, run_dir)
    return _ens(cfg, run_dir, enc)


def stage_fisher(cfg: RunConfig, run_dir: Path, enc: Encoded | None = None) -> dict:
    from .fisher.stage import stage_fisher as _fisher
    enc = enc or load_encoded(cfg, run_dir)
    return _fisher(cfg, run_dir, enc)


def stage_distill(cfg: RunConfig, run_dir: Path, enc: Encoded | None = None) -> dict:
    from .distill.sweep import stage_distill as _distill
    enc = enc or load_encoded(cfg, run_dir)
    return _distill(cfg, run_dir, enc)


def load_encoded(cfg: RunConfig, run_dir: Path) -> Encoded:
    """The run's split encoded with the dataset's side fields."""
    split = data_mod.read_split(run_dir)
    ds = data_mod.load(cfg.data, quiet=cfg.quiet)
    return data_mod.encode(ds, split, n_buckets=cfg.data.n_buckets,
                           max_tokens=cfg.data.max_tokens)


def write_json(path: Path, obj) -> None:
    from .atomic import atomic_write_text
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def run_all(cfg: RunConfig, run_dir: Path) -> None:
    """Every stage in order. Stages not built yet are skipped with a note."""
    t0 = time.perf_counter()
    stage_split(cfg, run_dir)
    enc = load_encoded(cfg, run_dir)
    stage_train(cfg, run_dir, enc)
    stage_ensemble(cfg, run_dir, enc)
    stage_fisher(cfg, run_dir, enc)
    stage_distill(cfg, run_dir, enc)
    log.info("run finished in %.1fs: %s", time.perf_counter() - t0, run_dir)
