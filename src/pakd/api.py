"""The Python API: the same operations as the CLI, as plain functions."""
from __future__ import annotations

from . import data as _data
from .config import DataConfig
from .data import Dataset, Encoded, Split


def load_dataset(name: str = "ml-latest-small", **settings) -> Dataset:
    """Load a MovieLens release or a ratings file; ``settings`` are `DataConfig` fields
    (``dir=``, ``columns=``, ``duplicates=`` ...)."""
    return _data.load(DataConfig(dataset=name, **settings), quiet=settings.get("quiet", False))


def split(ds: Dataset, method: str = "user_ratio", ratios=(0.8, 0.1, 0.1), k: int = 1,
          seed: int = 0) -> Split:
    """A seeded split of ``ds`` (see `pakd.data.splits`); ``.write(run_dir)`` saves it."""
    return _data.make_split(ds.ratings, method=method, ratios=tuple(ratios), k=k, seed=seed,
                            source=ds.source.get("ratings") or ds.source.get("folder"))


def encode(ds: Dataset, sp: Split, n_buckets: int = 10, max_tokens: int = 16) -> Encoded:
    """Index tensors and the field `Schema` for the models."""
    return _data.encode(ds, sp, n_buckets=n_buckets, max_tokens=max_tokens)


def pool_seeds(run_dir, seeds) -> dict:
    """Pool finished runs of several seeds (``run_dir``/seed-<s>, as ``pakd run --seeds``
    makes them) into ``run_dir``/seeds.json and seeds.md; returns what was written."""
    from .recipes.seeds import pool
    return pool(run_dir, list(seeds))
