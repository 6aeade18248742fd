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


# the packages a run's figures can depend on (numerics, readers, the fitted ensemble weights)
PACKAGES = ("torch", "numpy", "scipy", "pandas", "pyarrow")


def environment() -> dict:
    """What a run's figures depend on besides its settings and data: Python, the packages
    that compute them, torch's threads and build, the machine and pakd's git commit (when
    pakd runs from a checkout). Kept with a run so that two runs that differ can be told
    apart by their environments, not only by their settings."""
    import platform
    import subprocess
    from importlib import metadata
    from . import __version__
    out = {"pakd": __version__, "python": platform.python_version(),
           "machine": platform.machine(), "system": platform.system(),
           "torch_threads": torch.get_num_threads()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    src = Path(__file__).resolve().parent
    if "site-packages" in src.parts:      # an installed copy: a checkout around it is not its
        return out
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                              text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."],
                               cwd=src, capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def progress(iterable=None, *, total=None, desc: str = "", quiet: bool = False, **kw):
    return tqdm(iterable, total=total, desc=desc, disable=quiet, leave=False,
                dynamic_ncols=True, **kw)
