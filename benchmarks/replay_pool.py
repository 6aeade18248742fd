"""Issue 35's fold-in target over several temporal replays pooled: few users that a model
knows rate again after its cut (16 at the 90% cut of ml-latest-small), so one replay
cannot tell whether fold-in recovers 80% of the gap for them. Replays at other cuts
(`benchmarks/temporal_replay.py`, each with its EARLY and LATE runs) add events; this pools
their events and gives the share of the NDCG@10 gap recovered per group with a 95%
interval that resamples users (a user's events in every replay together, so a user seen
by two replays is not counted as two).

    .venv/bin/python benchmarks/replay_pool.py --replays DIR1,DIR2 --out DIR \
        [--baseline BASE1,BASE2]      # the same windows replayed with another fold-in
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temporal_replay import ndcg_gap, rank_gap  # noqa: E402


def diff_ci(part: pd.DataFrame, rng, n: int = 1000) -> list | None:
    """Fold minus re-distilled NDCG@10 with a 95% interval resampling users: the share of
    the gap means little where re-distilling gains nothing over no update."""
    if not len(part):
        return None
    g = part.groupby("user")[["fold", "redistill"]].agg(["sum", "count"])
    d = (g[("fold", "sum")] - g[("redistill", "sum")]).to_numpy()
    cnt = g[("fold", "count")].to_numpy()
    boot = []
    for _ in range(n):
        pick = rng.integers(0, len(cnt), len(cnt))
        boot.append(d[pick].sum() / cnt[pick].sum())
    return [float(d.sum() / cnt.sum()), *map(float, np.percentile(boot, [2.5, 97.5]))]


def against(df: pd.DataFrame, baseline: list[str]) -> dict:
    """This fold-in's NDCG@10 minus the baseline replays' fold-in, on the same events (the
    replays must hold the same events in the same order), with user-resampled intervals."""
    base = pd.concat([pd.read_csv(Path(d) / "temporal_replay_events.csv.gz") for d in baseline],
                     ignore_index=True)
    if len(base) != len(df) or not ((base["user"].astype(str).to_numpy()
                                     == df["user"].astype(str).to_numpy()).all()
                                    and (base["item"].to_numpy() == df["item"].to_numpy()).all()):
        raise SystemExit("--baseline: its replays do not hold the same events in the same order")
    pair = pd.DataFrame({"user": df["user"], "fold": df["fold"], "redistill": base["fold"]})
    rng = np.random.default_rng(3)
    groups = {"all": np.ones(len(df), dtype=bool), "known_users": df["known"].to_numpy(),
              "new_users": ~df["known"].to_numpy(), "trained_items": ~df["new_item"].to_numpy(),
              "new_items": df["new_item"].to_numpy()}
    return {k: diff_ci(pair[m], rng) for k, m in groups.items()}


def summary(part: pd.DataFrame, rng, rng_place) -> dict:
    """Mean NDCG@10 of each variant, the share of the gap recovered with its interval, and
    the same on the rated item's place (trained items)."""
    trained = part[~part["new_item"]]
    return {**ndcg_gap(part, rng),
            "fold_minus_redistill": diff_ci(part, np.random.default_rng(2)),
            "trained_items_by_place": rank_gap(trained, rng_place)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replays", required=True, help="replay output folders, comma-separated")
    ap.add_argument("--baseline", default=None,
                    help="the same replays with another fold-in, comma-separated in the same "
                    "order: adds this fold-in minus that one, paired on the same events")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    parts, sources = [], []
    for d in a.replays.split(","):
        e = pd.read_csv(Path(d) / "temporal_replay_events.csv.gz")
        e["replay"] = d
        parts.append(e)
        j = json.loads((Path(d) / "temporal_replay.json").read_text())
        sources.append({"folder": d, "early_cut": j["early_cut"], "late_cut": j["late_cut"],
                        "events": len(e), "known_users": int(e.loc[e["known"], "user"].nunique())})
    df = pd.concat(parts, ignore_index=True)
    rng, rng_place = np.random.default_rng(0), np.random.default_rng(1)
    out = {"replays": sources}
    for name, part in (("all", df), ("known_users", df[df["known"]]),
                       ("new_users", df[~df["known"]])):
        out[name] = {**summary(part, rng, rng_place),
                     "trained_items": summary(part[~part["new_item"]], rng, rng_place)}
    if a.baseline:
        out["fold_minus_baseline"] = against(df, a.baseline.split(","))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "replay_pool.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
