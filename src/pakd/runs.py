"""The run directory: resolved config, log file, threads and seeds - shared by all stages."""
from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import RunConfig, dump_yaml
from .atomic import atomic_write_text

log = logging.getLogger("pakd")


def setup_logging(quiet: bool, run_dir: Path | None = None) -> None:
    """Console at INFO (WARNING when quiet); DEBUG into RUN/pakd.log."""
    log.setLevel(logging.DEBUG)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "pakd.log", encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)
    log.propagate = False


def set_threads(cfg: RunConfig) -> int:
    n = cfg.threads or torch.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def write_run_config(cfg: RunConfig, run_dir: Path) -> None:
    atomic_write_text(Path(run_dir) / "run.yaml", dump_yaml(cfg))


def progress(iterable=None, *, total=None, desc: str = "", quiet: bool = False, **kw):
    return tqdm(iterable, total=total, desc=desc, disable=quiet, leave=False,
                dynamic_ncols=True, **kw)
