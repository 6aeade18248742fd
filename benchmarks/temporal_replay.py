"""Temporal replay (issue 35): how fast a student goes stale, and what fold-in buys.

Two runs of the same settings with a global temporal split: EARLY trained on the ratings
before the 90% time quantile, LATE on those before the 95% quantile (the "full
re-distillation" a periodic rerun would give). The ratings after the 95% cut are replayed
in time order; before each one, the user's ranking is asked of

- ``none``: EARLY's student as trained (no update);
- ``fold``: EARLY's student in a `LiveState` that has folded in every rating after the 90%
  cut up to this one (and the new items, added when first rated and placed by their side
  fields, then by their ratings; ``--new-items`` leaves parts of that out);
- ``redistill``: LATE's student as trained;

and NDCG@10 of the rated item is recorded (1/log2(rank + 2) when it is among the top 10,
else 0). Every variant skips the items the user rated before (their whole history up to
that moment). A user the model does not know gets the most rated items (the service's
``--fallback popular``); an item it does not know is a miss. Users are "known" when EARLY
trained on them, "new" otherwise. For new items (not in EARLY's catalogue) it also
reports how often they reach the fold student's top-10 (and top-100) at their rating
events, beside what a random placement among the user's unseen items would give, and
their mean percentile rank (0.5 at random).

The events are few - and few of them by users EARLY knew (16 users on ml-latest-small) -
and hits are rare, so each share of the gap recovered comes with a 95% interval
(bootstrap over users), and the rank of the rated item (`rank_*` in
``temporal_replay_events.csv.gz``, one row per event) gives a less noisy view than
NDCG@10 (``by_place``: the gap recovered on that rank, on trained items). The figures are
also given on the events of trained items alone (the re-distilled student knows few of the
new ones). The fold's time per rating is split between ratings of trained and of new
items.
    .venv/bin/python benchmarks/temporal_replay.py --early RUN90 --late RUN95 \
        --student fisher_kd_r0_5 --out benchmarks/results/<date>_replay
    # an earlier window, its events up to RUN90's cut
    .venv/bin/python benchmarks/temporal_replay.py --early RUN80 --late RUN85 --until RUN90 ...
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

    def scores(self, user, seen_ids: set) -> torch.Tensor:
        """The user's scores of the catalogue, -inf on the items they rated before."""
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
        return s

    def ranked(self, user, seen_ids: set, item) -> tuple[list, int | None]:
        """(top-10, the rank of ``item`` among the unseen items; None if not in the
        catalogue)."""
        s = self.scores(user, seen_ids)
        top = [self.dep.item_ids[i] for i in torch.topk(s, 10).indices.tolist()]
        return top, rank_of(s, self.dep.item_index(item))

    def top10(self, user, seen_ids: set) -> list:
        return self.ranked(user, seen_ids, None)[0]


def rank_of(scores: torch.Tensor, i: int | None) -> int | None:
    """How many items score above item ``i`` (ties count half): 0 = first."""
    if i is None:
        return None
    s = scores[i]
    return int((scores > s).sum()) + int((scores == s).sum() - 1) // 2


def percentile(part: pd.DataFrame, col: str) -> float | None:
    """Mean rank / unseen items of the events whose item the variant knows (0 = first,
    0.5 = a random placement)."""
    ok = part[part[col].notna()]
    return float((ok[col] / ok["unseen"]).mean()) if len(ok) else None


def rmse(part: pd.DataFrame) -> float | None:
    """RMSE of the fold student's predicted rating, over the events it could predict (a
    user it knows)."""
    ok = part[part["pred_fold"].notna()]
    return float(np.sqrt(((ok["pred_fold"] - ok["rating"]) ** 2).mean())) if len(ok) else None


def gap_ci(part: pd.DataFrame, rng, n: int = 1000) -> list | None:
    """95% interval of the share of the gap recovered, resampling users (their events
    together): the events are few and hits rare, so the share is noisy."""
    if not len(part):
        return None
    g = part.groupby("user")[["none", "fold", "redistill"]].agg(["sum", "count"])
    sums = np.stack([g[(v, "sum")].to_numpy() for v in ("none", "fold", "redistill")], 1)
    cnt = g[("none", "count")].to_numpy()
    out = []
    for _ in range(n):
        pick = rng.integers(0, len(cnt), len(cnt))
        m = sums[pick].sum(0) / cnt[pick].sum()
        d = m[2] - m[0]
        out.append((m[1] - m[0]) / d if d > 0 else np.nan)
    out = np.asarray(out)
    if np.isnan(out).mean() > 0.025:          # the gap itself is not sure to be positive
        return None
    lo, hi = np.nanpercentile(out, [2.5, 97.5])
    return [float(lo), float(hi)]


def ndcg_gap(part: pd.DataFrame, rng) -> dict:
    """Events, users, each variant's mean NDCG@10 and the share of the gap fold-in
    recovers, with its interval."""
    m = {v: float(part[v].mean()) if len(part) else float("nan")
         for v in ("none", "fold", "redistill")}
    d = m["redistill"] - m["none"]
    return {"events": len(part), "users": int(part["user"].nunique()),
            **{f"ndcg10_{k}": v for k, v in m.items()},
            "gap_recovered": (m["fold"] - m["none"]) / d if d > 0 else None,
            "gap_recovered_ci95": gap_ci(part, rng)}


def rank_gap(part: pd.DataFrame, rng) -> dict | None:
    """The gap recovered measured on the rated item's place among the user's unseen items
    (1 - rank / unseen, higher is better): every event counts, not only the rare top-10
    hits, so it is less noisy than NDCG@10. Only on the events whose item all three
    variants know (the trained items)."""
    ok = part.dropna(subset=["rank_none", "rank_fold", "rank_redistill"])
    if not len(ok):
        return None
    q = pd.DataFrame({"user": ok["user"],
                      **{v: 1 - ok[f"rank_{v}"] / ok["unseen"]
                         for v in ("none", "fold", "redistill")}})
    m = {v: float(q[v].mean()) for v in ("none", "fold", "redistill")}
    d = m["redistill"] - m["none"]
    return {"events": len(q), **{f"place_{k}": v for k, v in m.items()},
            "gap_recovered": (m["fold"] - m["none"]) / d if d > 0 else None,
            "gap_recovered_ci95": gap_ci(q, rng)}


def ndcg(top: list, item) -> float:
    return 1.0 / math.log2(top.index(item) + 2) if item in top else 0.0


def ablate(how: str) -> None:
    """Leave out parts of the new items' placement (`pakd.deploy.foldin.TowerFold`)."""
    from pakd.deploy.foldin import TowerFold
    if how == "side":
        TowerFold.places_items = False
    elif how.startswith("damped:"):
        # the counts extrapolated with a pseudo-exposure of lam train windows added: an item
        # rated by many in its first hours is placed with less confidence
        lam, placed = float(how.split(":", 1)[1]), TowerFold.new_item_bias

        def damped(self, items, counts, exposure):
            return placed(self, items, counts, exposure.double() + lam * self.prior[2])
        TowerFold.new_item_bias = damped
    elif how == "bias":
        def unmoved(self, item, *args):
            m = self.model
            q, b, _ = m._catalogue()
            return q[item] @ m.rank_item.T, q[item] @ m.rate_item.T, b[item]
        TowerFold.item_from_raters = unmoved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--early", required=True)
    ap.add_argument("--late", required=True)
    ap.add_argument("--student", default="fisher_kd_r0_5")
    ap.add_argument("--out", required=True)
    ap.add_argument("--until", default=None,
                    help="another run: replay only the events up to its train cut (a window "
                    "that ends where another replay starts; default: to the end)")
    ap.add_argument("--new-items", default="placed",
                    help="how the fold student places new items (an ablation): by their "
                    "side fields, then their ratings' popularity and raters (placed, what "
                    "pakd does), the popularity only (bias), their side fields only "
                    "(side: before December 2026), or as placed with the count damped by "
                    "a pseudo-exposure of LAM train windows (damped:LAM)")
    args = ap.parse_args()
    if args.new_items not in ("placed", "bias", "side") and \
            not args.new_items.startswith("damped:"):
        ap.error(f"--new-items {args.new_items}: one of placed, bias, side, damped:LAM")
    torch.set_num_threads(1)
    ablate(args.new_items)
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
    early_items = set(map(str, none.dep.item_ids))
    rate_ms: dict[bool, list] = {False: [], True: []}     # new item? -> ms per rating

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
        t1 = time.perf_counter()
        live.apply(live.check({"type": "ratings", "user": user,
                               "ratings": [[item, float(rating)]]}))
        fold_s += time.perf_counter() - t
        rate_ms[str(item) not in early_items].append(1e3 * (time.perf_counter() - t1))
        n_fold += 1

    def fold_ranked(user, s: set, item) -> tuple[list, int | None]:
        k = live.user_index(user)
        if k is None:                         # no rating yet: the same fallback as none
            return none.ranked(user, s, item)
        seen_k = live.seen_padded(np.array([k]))
        _, idx = live.graphs.top(np.array([k]), seen_k, 10)
        with torch.no_grad():
            sc = live.rows.score_all(torch.tensor([k]))[0].clone()
        sc[torch.from_numpy(seen_k[0][seen_k[0] >= 0])] = -math.inf
        return ([live.item_ids[j] for j in idx[0].tolist() if j >= 0],
                rank_of(sc, live.item_index(item)))

    after90 = r[r["timestamp"] > c90]
    gap = after90[after90["timestamp"] <= c95]
    for u, i, x in zip(gap["user"], gap["item"], gap["rating"]):
        fold(u, i, x)
        seen.setdefault(u, set()).add(i)
    events = after90[after90["timestamp"] > c95]
    if args.until:
        events = events[events["timestamp"] <= cut_of(Path(args.until))]
    rows = []
    t0 = time.perf_counter()
    for u, i, x in zip(events["user"], events["item"], events["rating"]):
        s = seen.get(u, set())
        new_item = str(i) not in early_items
        if new_item:
            add_item(i)                       # in the catalogue from its first rating on
        fs, f_rank = fold_ranked(u, s, i)
        ns, n_rank = none.ranked(u, s, i)
        rs, r_rank = redo.ranked(u, s, i)
        n_unseen = len(live.item_ids) - len(s)
        k, j = live.user_index(u), live.item_index(i)
        pred = math.nan
        if k is not None and j is not None:
            with torch.no_grad():
                pred = float(live.rows.predict(torch.tensor([k]), torch.tensor([j]))[0])
        rows.append({"rating": float(x), "pred_fold": pred, "user": u, "item": i,
                     "known": str(u) in known_users, "new_item": new_item,
                     "none": ndcg(ns, i), "fold": ndcg(fs, i),
                     "redistill": ndcg(rs, i), "rank_none": n_rank, "rank_fold": f_rank,
                     "rank_redistill": r_rank, "unseen": n_unseen,
                     "fold_hit": i in fs, "random_hit": min(1.0, 10 / max(1, n_unseen))})
        fold(u, i, x)
        s.add(i)
        seen[u] = s
    df = pd.DataFrame(rows)
    out = {"early_cut": c90, "late_cut": c95, "student": args.student,
           "until_cut": cut_of(Path(args.until)) if args.until else None,
           "folded_before_window": len(gap), "events": len(df),
           "items_added": n_items_added, "items_without_known_fields": len(no_fields),
           "new_items_placed": args.new_items,
           "fold_ms_per_rating": 1e3 * fold_s / max(1, n_fold),
           "fold_ms_one_rating": {
               ("new_item" if k else "trained_item"): {
                   "n": len(v), "p50": float(np.percentile(v, 50)) if v else None,
                   "p99": float(np.percentile(v, 99)) if v else None} for k, v in rate_ms.items()},
           "replay_seconds": time.perf_counter() - t0}
    rng = np.random.default_rng(0)
    rng_place = np.random.default_rng(1)        # apart: the NDCG intervals stay as kept

    def summary(part: pd.DataFrame) -> dict:
        return {**ndcg_gap(part, rng),
                "hits": {v: int((part[v] > 0).sum()) for v in ("none", "fold", "redistill")},
                "mean_percentile_rank_fold": percentile(part, "rank_fold")}

    for name, part in (("all", df), ("known_users", df[df["known"]]),
                       ("new_users", df[~df["known"]])):
        out[name] = {**summary(part),
                     "rating_rmse_fold_trained_items": rmse(part[~part["new_item"]]),
                     "trained_items": {**summary(part[~part["new_item"]]),
                                       "by_place": rank_gap(part[~part["new_item"]],
                                                            rng_place)}}
    ni = df[df["new_item"]]
    out["new_items"] = {
        "events": len(ni), "items": int(ni["item"].nunique()),
        "fold_top10_rate": float(ni["fold_hit"].mean()) if len(ni) else None,
        "random_top10_rate": float(ni["random_hit"].mean()) if len(ni) else None,
        "fold_top100_rate": float((ni["rank_fold"] < 100).mean()) if len(ni) else None,
        "random_top100_rate": float(np.minimum(1, 100 / ni["unseen"]).mean())
        if len(ni) else None,
        "fold_mean_percentile_rank": percentile(ni, "rank_fold"),
        "random_mean_percentile_rank": 0.5,
        "redistill_known": int(ni["rank_redistill"].notna().sum()),
        "rating_rmse_fold": rmse(ni),
        "redistill_top10_rate": float((ni["redistill"] > 0).mean()) if len(ni) else None}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    df.to_csv(Path(args.out) / "temporal_replay_events.csv.gz", index=False)
    (Path(args.out) / "temporal_replay.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
