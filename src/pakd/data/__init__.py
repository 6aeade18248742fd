"""Data: loading (MovieLens releases, generic tables), checks, splits and encoding."""
from __future__ import annotations

import codecs
from pathlib import Path

from ..config import DataConfig
from ..errors import DataError
from .dataset import Dataset, filter_min_counts
from .encode import Encoded, encode
from .generic import load_table
from .movielens import RELEASES, load_movielens
from .splits import Split, make_split, read_split

__all__ = ["Dataset", "Encoded", "Split", "RELEASES", "load", "load_movielens", "load_table",
           "make_split", "read_split", "encode"]


def load(cfg: DataConfig | None = None, *, quiet: bool = False) -> Dataset:
    """Load the dataset a `DataConfig` names (a MovieLens release or a ratings file)."""
    cfg = cfg or DataConfig()
    name = cfg.dataset
    if name in RELEASES:
        ds = load_movielens(name, data_dir=Path(cfg.dir) if cfg.dir else None,
                            cache_dir=Path(cfg.cache) if cfg.cache else None,
                            download=cfg.download, base_url=cfg.base_url,
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
