"""Temporal replay (issue 35): how fast a student goes stale, and what fold-in buys.

Two runs of the same settings with a global temporal split: EARLY trained on the ratings
before the 90% time quantile, LATE on those before the 95% quantile (the "full
re-distillation" a periodic rerun would give). The ratings after the 95% cut are replayed
in time order; before each one, the user's ranking is asked of

- ``none``: EARLY's student as trained (no update);
- ``fold``: EARLY's student in a `LiveState` that has folded in every rating after the 90%
  cut up to this one (and the new items, placed by their side fields when first rated);
- ``redistill``: LATE's student as trained;

and NDCG@10 of the rated item is recorded (1/log2(rank + 2) when it is among the top 10,
else 0). Every variant skips the items the user rated before (their whole history up to
that moment). A user the model does not know gets the most rated items (the service's
``--fallback popular``); an item it does not know is a miss. Users are "known" when EARLY
trained on them, "new" otherwise. For new items (not in EARLY's catalogue) it also
reports how often they reach the fold student's top-10 at their rating events, beside
what a random placement among the user's unseen items would give.

    .venv/bin/python benchmarks/temporal_replay.py --early RUN90 --late RUN95 \
        --student fisher_kd_r0_5 --out benchmarks/results/<date>_replay
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def cut_of(run: Path) -> int:
    s = pd.read_csv(run / "split.csv", usecols=["timestamp", "part"])
    return int(s.loc[s["part"] == "train", "timestamp"].max())


class Static:
    """A saved student that never changes: top-10 of a user, their seen items skipped."""

    def __init__(self, model_path: Path):
        from pakd.deploy.deployable import load_deployable
        self.dep = load_deployable(model_path)
        self.model = self.dep.model.eval()
        self.popular = self.dep.popular

    def top10(self, user, seen_ids: set) -> list:
        dep = self.dep
        u = dep.user_index(user)
        skip = [i for i in (dep.item_index(x) for x in seen_ids) if i is not None]
        if u is None:
            s = torch.zeros(dep.n_items)
            s[torch.from_numpy(np.asarray(self.popular[:200]).copy())] = \
                torch.linspace(2, 1, min(200, dep.n_items))
        else:
            with torch.no_grad():
                s = self.model.score_all(torch.tensor([u]))[0].clone()
        if skip:
            s[torch.tensor(skip)] = -math.inf
        return [dep.item_ids[i] for i in torch.topk(s, 10).indices.tolist()]


def ndcg(top: list, item) -> float:
    return 1.0 / math.log2(top.index(item) + 2) if item in top else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--early", required=True)
    ap.add_argument("--late", required=True)
    ap.add_argument("--student", default="fisher_kd_r0_5")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pakd.config import build_config, load_run_config
    from pakd.data import load
    from pakd.deploy.service import load_live
    from pakd.errors import PakdError
    early, late = Path(args.early), Path(args.late)
    cfg = build_config(base=load_run_config(early / "run.yaml"))
    ds = load(cfg.data, quiet=True)
    r = ds.ratings.reset_index(drop=True)
    r = r.iloc[np.lexsort((np.arange(len(r)), r["timestamp"].to_numpy()))]
    c90, c95 = cut_of(early), cut_of(late)
    none = Static(early / "models" / "students" / args.student)
    redo = Static(late / "models" / "students" / args.student)
    live = load_live(early / "models" / "students" / args.student, k=10)
    known_users = {str(u) for u in pd.read_csv(early / "split.csv", usecols=["user", "part"])
                   .query("part == 'train'")["user"].unique()}
    items = ds.items
    seen: dict = {}
    for u, i in zip(r.loc[r["timestamp"] <= c90, "user"], r.loc[r["timestamp"] <= c90, "item"]):
        seen.setdefault(u, set()).add(i)

    def features(item) -> dict:
        row = items.loc[item]
        out = {}
        for f in live.fields.names if live.fields else []:
            v = row.get(f)
            if isinstance(v, (list, np.ndarray)):
                v = [str(x) for x in v]
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            out[f] = v
        return out

    fold_s, n_fold, n_items_added, no_fields = 0.0, 0, 0, set()

    def add_item(item) -> bool:
        nonlocal n_items_added
        if live.item_index(item) is not None:
            return True
        try:
            live.apply(live.check({"type": "item", "item": item, "title": str(item),
                                   "features": features(item)}))
        except PakdError:                     # no known side field: it stays unknown
            no_fields.add(item)
            return False
        n_items_added += 1
        return True

    def fold(user, item, rating) -> None:
        nonlocal fold_s, n_fold
        t = time.perf_counter()
        if not add_item(item):
            return
        live.apply(live.check({"type": "ratings", "user": user,
                               "ratings": [[item, float(rating)]]}))
        fold_s += time.perf_counter() - t
        n_fold += 1

    def fold_top10(user, s: set) -> list:
        k = live.user_index(user)
        if k is None:                         # no rating yet: the same fallback as none
            return none.top10(user, s)
        _, idx = live.graphs.top(np.array([k]), live.seen_padded(np.array([k])), 10)
        return [live.item_ids[j] for j in idx[0].tolist() if j >= 0]

    after90 = r[r["timestamp"] > c90]
    gap = after90[after90["timestamp"] <= c95]
    for u, i, x in zip(gap["user"], gap["item"], gap["rating"]):
        fold(u, i, x)
        seen.setdefault(u, set()).add(i)
    events = after90[after90["timestamp"] > c95]
    early_items = set(map(str, none.dep.item_ids))
    rows = []
    t0 = time.perf_counter()
    for u, i, x in zip(events["user"], events["item"], events["rating"]):
        s = seen.get(u, set())
        new_item = str(i) not in early_items
        if new_item:
            add_item(i)                       # in the catalogue from its first rating on
        fs = fold_top10(u, s)
        n_unseen = len(live.item_ids) - len(s)
        rows.append({"user": u, "known": str(u) in known_users, "new_item": new_item,
                     "none": ndcg(none.top10(u, s), i), "fold": ndcg(fs, i),
                     "redistill": ndcg(redo.top10(u, s), i),
                     "fold_hit": i in fs, "random_hit": min(1.0, 10 / max(1, n_unseen))})
        fold(u, i, x)
        s.add(i)
        seen[u] = s
    df = pd.DataFrame(rows)
    out = {"early_cut": c90, "late_cut": c95, "student": args.student,
           "folded_before_window": len(gap), "events": len(df),
           "items_added": n_items_added, "items_without_known_fields": len(no_fields),
           "fold_ms_per_rating": 1e3 * fold_s / max(1, n_fold),
           "replay_seconds": time.perf_counter() - t0}
    for name, part in (("all", df), ("known_users", df[df["known"]]),
                       ("new_users", df[~df["known"]])):
        m = {v: float(part[v].mean()) if len(part) else float("nan")
             for v in ("none", "fold", "redistill")}
        d = m["redistill"] - m["none"]
        out[name] = {"events": len(part), **{f"ndcg10_{k}": v for k, v in m.items()},
                     "gap_recovered": (m["fold"] - m["none"]) / d if d > 0 else None}
    ni = df[df["new_item"]]
    out["new_items"] = {"events": len(ni), "fold_top10_rate": float(ni["fold_hit"].mean())
                        if len(ni) else None,
                        "random_top10_rate": float(ni["random_hit"].mean()) if len(ni) else None}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "temporal_replay.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
