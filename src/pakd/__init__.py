"""pakd - pruning-aware knowledge distillation for recommender models.

The Python API mirrors the CLI::

    import pakd
    ds = pakd.load_dataset("ml-latest-small")
    split = pakd.split(ds, method="user_ratio", seed=0)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import encode, load_dataset, split  # noqa: E402
from .config import RunConfig, build_config  # noqa: E402
from .errors import ConfigError, DataError, PakdError  # noqa: E402

__all__ = ["__version__", "load_dataset", "split", "encode", "RunConfig", "build_config",
           "PakdError", "DataError", "ConfigError"]
