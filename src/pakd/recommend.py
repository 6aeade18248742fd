"""`pakd recommend`: top-K items for one user from a saved model, in the terminal (the
same lookup `pakd serve` answers over HTTP) as text, JSON or CSV."""
from __future__ import annotations

import csv
import io
import json

import numpy as np

from .deploy.deployable import load_deployable
from .deploy.graphs import TorchGraphs
from .errors import PakdError
from .limits import short

FORMATS = ("text", "json", "csv")


def top_items(model_path: str, user: str, *, k: int = 10, run_dir: str | None = None,
              include_seen: bool = False) -> dict:
    """``{"user", "model", "k", "seen_skipped", "items": [{rank, item, title, score}]}``;
    ``seen_skipped``: how many train/valid items were left out (None: none were, either
    asked or for want of a run directory)."""
    if k < 1:
        raise PakdError(f"-k must be at least 1, got {k}")
    dep = load_deployable(model_path, run_dir=run_dir)
    if k > dep.n_items:
        raise PakdError(f"-k {k} is more than the {dep.n_items:,} items of the model's "
                        f"catalogue: give -k {dep.n_items} or less")
    u = dep.user_index(user)
    if u is None:
        raise PakdError(f"user {short(user)} is not among this model's {len(dep.user_ids):,} "
                        "users (the IDs of the ratings file it was trained on)")
    users = np.array([u], dtype=np.int64)
    skip = not include_seen and dep.run is not None
    seen = dep.seen_padded(users) if skip else np.full((1, 1), -1, np.int64)
    scores, top = TorchGraphs(dep.model, k).top(users, seen)
    items = [{"rank": rank, "item": dep.item_ids[int(i)], "title": dep.titles[int(i)],
              "score": float(s)}
             for rank, (i, s) in enumerate(zip(top[0][:k], scores[0][:k]), 1) if np.isfinite(s)]
    return {"user": dep.user_ids[u], "model": dep.name, "k": k,
            "seen_skipped": len(dep.seen(u)) if skip else None,
            "no_run": dep.run is None and not include_seen, "items": items}


def render(result: dict, fmt: str = "text") -> str:
    """The result of `top_items` as ``fmt``: text for people, JSON or CSV for scripts."""
    if fmt == "json":
        return json.dumps({k: v for k, v in result.items() if k != "no_run"}) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["rank", "item", "title", "score"])
        for it in result["items"]:
            w.writerow([it["rank"], it["item"], it["title"], f"{it['score']:.6g}"])
        return buf.getvalue()
    if fmt != "text":
        raise PakdError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if result["seen_skipped"] is not None:
        note = f" (skipping {result['seen_skipped']} items seen in train/valid)"
    elif result["no_run"]:
        note = " (no run directory found: seen items are not skipped; pass --run)"
    else:
        note = ""
    lines = [f"top-{result['k']} for user {result['user']}{note}:"]
    lines += [f"{it['rank']:>3}. {it['title']}  [item {it['item']}]" for it in result["items"]]
    return "\n".join(lines) + "\n"

