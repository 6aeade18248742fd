"""Recipe `split`: load the dataset, write the seeded split to RUN/split.csv + split.json.

Later stages read it back as index tensors with the dataset's side fields
(`pakd.data.load_encoded`).
"""
from __future__ import annotations

import time

from .. import data as data_mod
from ..config import RunConfig
from ..data.encoding import Encoded
from ..data.splits import Split
from ..rundir import RunDir
from ..runtime import log


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> Split:
    """Write the split (``enc`` is ignored: nothing is encoded before the split)."""
    t0 = time.perf_counter()
    ds = data_mod.load(cfg.data, quiet=cfg.quiet)
    split = data_mod.make_split(ds.ratings, method=cfg.split.method,
                                ratios=tuple(cfg.split.ratios), k=cfg.split.k, seed=cfg.seed,
                                source=ds.source.get("ratings") or ds.source.get("folder"))
    split.summary["dataset"] = ds.name
    path = split.write(rd.root)
    s = split.summary
    log.info("split %s (%s, seed %d): train %d / valid %d / test %d ratings; cold rows dropped: "
             "valid %d, test %d -> %s (%.1fs)", ds.name, s["method"], cfg.seed,
             s["rows"]["train"], s["rows"]["valid"], s["rows"]["test"],
             s["cold_dropped"]["valid"], s["cold_dropped"]["test"], path,
             time.perf_counter() - t0)
    return split


def done(rd: RunDir) -> bool:
    """The split is made before run.yaml (the CLI fits settings to its size)."""
    return rd.split_csv.is_file()
