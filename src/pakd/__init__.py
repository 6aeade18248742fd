"""pakd - pruning-aware knowledge distillation for recommender models.

The Python API mirrors the CLI::

    import pakd
    ds = pakd.load_dataset("ml-latest-small")
    split = pakd.split(ds, method="user_ratio", seed=0)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import ConfigError, DataError, PakdError  # noqa: E402

_LAZY = {"load_dataset": "api", "split": "api", "encode": "api", "pool_seeds": "api",
         "RunConfig": "config", "build_config": "config"}


def __getattr__(name):
    """Import the API on first use, so `import pakd.bench` or `pakd --help` stay light."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)

__all__ = ["__version__", "load_dataset", "split", "encode", "pool_seeds", "RunConfig",
           "build_config",
           "PakdError", "DataError", "ConfigError"]
