"""The process a stage runs in: logging, progress bars, warnings, threads and seeds."""
from __future__ import annotations

import json
import logging
import random
import sys
import warnings
from pathlib import Path

import numpy as np
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
    import torch      # here, not at the top: commands that never compute skip loading torch
    n = n or torch.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import torch
    torch.manual_seed(seed)


# the packages a run's figures can depend on (numerics, readers, the fitted ensemble weights,
# the exported graphs and the peers' baselines), named at the top of the record; every
# installed package's version is under "packages" as well
PACKAGES = ("torch", "numpy", "scipy", "pandas", "pyarrow", "threadpoolctl", "onnx",
            "onnxruntime", "scikit-surprise", "implicit")
# thread settings that change the BLAS/OpenMP libraries' results or speed when set
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_CBWR", "KMP_AFFINITY", "OMP_PROC_BIND", "CUBLAS_WORKSPACE_CONFIG")


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """The CPU's model and instruction-set flags (the first processor's; a kernel picks its
    AVX/AVX-512 path from them, which can change the last digits of a sum), and the cores."""
    import os
    import platform
    out = {"model": platform.processor() or None, "flags": [], "cores": os.cpu_count()}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and out["model"] in (None, "", platform.machine()):
            out["model"] = value.strip()
        elif key in ("flags", "Features") and not out["flags"]:
            out["flags"] = sorted(value.split())
    return out


def torch_build() -> dict:
    """torch's BLAS, LAPACK, oneDNN and OpenMP builds and the CPU kernels it chose, from
    ``torch.__config__.show()`` (the long compiler-flag lines are left out)."""
    import torch
    text = torch.__config__.show()
    out: dict = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "mkldnn": torch.backends.mkldnn.is_available(), "libraries": []}
    for line in text.splitlines():
        line = line.strip().lstrip("- ").strip()
        if line.startswith("Build settings:"):
            for kv in line[len("Build settings:"):].split(", "):
                k, _, v = kv.partition("=")
                k = k.strip()
                if k in ("BLAS_INFO", "LAPACK_INFO", "USE_MKL", "USE_MKLDNN", "USE_OPENMP",
                         "TORCH_VERSION", "COMMIT_SHA", "USE_CUDA"):
                    out[k.lower()] = v.strip()
        elif any(w in line for w in ("Math Kernel", "MKL-DNN", "oneDNN", "OpenMP", "OpenBLAS",
                                     "LAPACK")):
            out["libraries"].append(line)
    return out


def thread_pools() -> list[dict]:
    """The BLAS and OpenMP libraries loaded in this process (numpy's and scipy's OpenBLAS,
    torch's OpenMP/MKL), as threadpoolctl sees them: which build, version, kernel and
    threads. Sorted, so two records of the same libraries compare equal whatever order the
    process happened to load them in."""
    try:
        import scipy.linalg  # noqa: F401  (loads scipy's own BLAS so that it is listed)
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "threading_layer",
            "architecture", "num_threads")
    pools = [{k: d.get(k) for k in keep} for d in threadpool_info()]
    return sorted(pools, key=lambda d: json.dumps(d, sort_keys=True, default=str))


def packages() -> dict[str, str]:
    """Every installed distribution's version, by normalised name."""
    from importlib import metadata
    from .lockfile import normalise
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[normalise(name)] = dist.version
    return dict(sorted(out.items()))


def lock_record(installed: dict[str, str], root: Path | None = None) -> dict | None:
    """The lock file this checkout installs (sha256), whether it matches pyproject.toml, and
    every package whose installed version differs from it, is missing or is not in it
    (pakd itself aside). None when pakd does not run from a checkout with a lock."""
    import hashlib
    from . import lockfile
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    lock = root / lockfile.LOCK
    if not lock.is_file() or not (root / lockfile.PYPROJECT).is_file():
        return None
    locked = {n: p["version"] for n, p in lockfile.pins(lock).items()}
    differs = {}
    for name in sorted(set(locked) | set(installed)):
        if name == "pakd" or locked.get(name) == installed.get(name):
            continue
        differs[name] = {"locked": locked.get(name), "installed": installed.get(name)}
    return {"file": lockfile.LOCK, "sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
            "up_to_date": lockfile.problem(root) is None, "differs": differs}


def environment() -> dict:
    """What a run's figures depend on besides its settings and data: Python, the packages
    that compute them (every installed one, and how they differ from requirements.lock),
    the CPU and its instruction set, the BLAS/OpenMP/oneDNN builds and threads, whether
    torch's deterministic algorithms were on, and pakd's git commit (when pakd runs from a
    checkout). Kept with a run so that two runs that differ can be told apart by their
    environments, not only by their settings."""
    import os
    import platform
    import subprocess

    import torch

    from . import __version__
    installed = packages()
    out = {"pakd": __version__, "python": platform.python_version(),
           "machine": platform.machine(), "system": platform.system(),
           "torch_threads": torch.get_num_threads()}
    for name in PACKAGES:
        out[name] = installed.get(name)
    out["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    out["deterministic_warn_only"] = torch.is_deterministic_algorithms_warn_only_enabled()
    out["cpu"] = cpu_info()
    out["torch_build"] = torch_build()
    out["thread_pools"] = thread_pools()
    out["thread_env"] = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    out["packages"] = installed
    src = Path(__file__).resolve().parent
    if "site-packages" in src.parts:      # an installed copy: a checkout around it is not its
        return out
    out["lock"] = lock_record(installed)
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
