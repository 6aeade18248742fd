"""The process a stage runs in: logging, progress bars, warnings, threads and seeds."""
from __future__ import annotations

import logging
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger("pakd")


def setup_logging(quiet: bool, log_file: Path | None = None) -> None:
    """Console at INFO (WARNING when quiet); DEBUG into ``log_file`` (RUN/pakd.log). Quiet
    also silences warnings from the libraries pakd uses (pandas, torch, matplotlib...)."""
    log.setLevel(logging.DEBUG)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)
    log.propagate = False
    if quiet:
        warnings.filterwarnings("ignore")
        logging.captureWarnings(True)
        for name in ("matplotlib", "PIL", "torch", "py.warnings"):
            logging.getLogger(name).setLevel(logging.ERROR)


def set_threads(n: int) -> int:
    """Torch threads (0 = leave torch's choice: all cores); returns the number in use."""
    n = n or torch.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress(iterable=None, *, total=None, desc: str = "", quiet: bool = False, **kw):
    return tqdm(iterable, total=total, desc=desc, disable=quiet, leave=False,
                dynamic_ncols=True, **kw)
