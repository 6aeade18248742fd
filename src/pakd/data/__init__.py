"""Data: loading (MovieLens releases, generic tables), checks, splits and encoding.

Submodules load on first use, so importing a model (which needs only `schema`) stays light.
"""
from __future__ import annotations

import codecs
import importlib
from pathlib import Path

__all__ = ["Dataset", "Encoded", "Split", "RELEASES", "load", "load_movielens", "load_table",
           "make_split", "read_split", "encode", "load_encoded"]

_LAZY = {"Dataset": "dataset", "Encoded": "encoding", "encode": "encoding", "Split": "splits",
         "make_split": "splits", "read_split": "splits", "RELEASES": "movielens",
         "load_movielens": "movielens", "load_table": "generic"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


def load_encoded(cfg, run_dir):
    """A run's split (``run_dir``: a run directory or its path) encoded with the dataset's
    side fields, under the run's settings ``cfg``."""
    from .encoding import encode
    from .splits import read_split
    split = read_split(getattr(run_dir, "root", run_dir))
    ds = load(cfg.data, quiet=cfg.quiet)
    return encode(ds, split, n_buckets=cfg.data.n_buckets, max_tokens=cfg.data.max_tokens)


def load(cfg=None, *, quiet: bool = False):
    """Load the dataset a `DataConfig` names (a MovieLens release or a ratings file)."""
    from ..config import DataConfig
    from ..errors import DataError
    from .dataset import filter_min_counts
    from .generic import load_table
    from .movielens import RELEASES, load_movielens
    cfg = cfg or DataConfig()
    name = cfg.dataset
    if name in RELEASES:
        _refuse_generic_settings(cfg, name)
        ds = load_movielens(name, data_dir=Path(cfg.dir) if cfg.dir else None,
                            cache_dir=Path(cfg.cache) if cfg.cache else None,
                            download=cfg.download, base_url=cfg.base_url,
                            allow_insecure=cfg.allow_insecure,
                            allow_unverified=cfg.allow_unverified,
                            tags_top_n=cfg.tags_top_n, duplicates=cfg.duplicates,
                            zip_prefix_len=cfg.zip_prefix_len, quiet=quiet)
    else:
        path = Path(name)
        if not path.exists() and not any(s in name for s in ("/", ".")):
            raise DataError(f"unknown dataset {name!r}",
                            fix=f"use one of {', '.join(RELEASES)} or a path to a ratings file")
        scale = None
        if cfg.rating_min is not None or cfg.rating_max is not None:
            if cfg.rating_min is None or cfg.rating_max is None:
                raise DataError("give both --rating-min and --rating-max")
            scale = (cfg.rating_min, cfg.rating_max)
        sep = codecs.decode(cfg.sep, "unicode_escape") if cfg.sep else None
        ds = load_table(path, columns=cfg.columns, sep=sep, encoding=cfg.encoding,
                        rating_scale=scale, duplicates=cfg.duplicates,
                        user_features=cfg.user_features, item_features=cfg.item_features,
                        user_key=cfg.user_key, item_key=cfg.item_key,
                        feature_kinds=cfg.feature_kinds, multi_sep=cfg.multi_sep,
                        title_column=cfg.title_column)
    return filter_min_counts(ds, cfg.min_user_ratings, cfg.min_item_ratings,
                             file=str(ds.source.get("ratings") or ds.source.get("folder") or name))


# settings that only a generic table reads: a MovieLens release's format fixes each of them
_GENERIC_ONLY = ("columns", "sep", "encoding", "rating_min", "rating_max", "user_features",
                 "item_features", "user_key", "item_key", "feature_kinds", "title_column")


def _refuse_generic_settings(cfg, name: str) -> None:
    """A setting a release's loader would ignore is refused, never silently dropped."""
    from ..config.sections import DataConfig
    from ..errors import DataError
    given = [k for k in _GENERIC_ONLY
             if getattr(cfg, k) != DataConfig.model_fields[k].default]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        verb = "applies" if len(given) == 1 else "apply"
        raise DataError(f"{flags} only {verb} to a ratings file given by path; {name}'s own "
                        "format fixes the delimiter, encoding, columns and rating scale",
                        fix=f"drop {flags}, or pass the path of a ratings file as --dataset")
