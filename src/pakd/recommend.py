"""`pakd recommend`: top-K items for one user from a saved model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import PakdError
from .models import load
from .rundir import RunDir


def _parse_id(raw: str, ids: list):
    if ids and isinstance(ids[0], int):
        try:
            return int(raw)
        except ValueError:
            raise PakdError(f"user ID {raw!r} is not an integer like this model's IDs") from None
    return raw


def recommend(model_path: str, user: str, *, k: int = 10, run_dir: str | None = None,
              include_seen: bool = False) -> list[str]:
    stem = Path(model_path)
    stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
    cat_path = RunDir.catalog_of(stem)
    if not cat_path.is_file():
        raise PakdError(f"{cat_path} not found: it maps indices to IDs and titles and is saved "
                        "beside best_student_model by `pakd distill`")
    model, _ = load(stem)
    cat = json.loads(cat_path.read_text())
    uid = _parse_id(user, cat["user_ids"])
    try:
        u = cat["user_ids"].index(uid)
    except ValueError:
        raise PakdError(f"user {user} is not among this model's {len(cat['user_ids'])} users") from None
    with torch.no_grad():
        scores = model.score_all(torch.tensor([u]))[0].clone()
    seen_note = ""
    if not include_seen:
        rd = RunDir(run_dir) if run_dir else RunDir.of_model(stem)
        split = rd.split_csv if rd else None
        if split is not None and split.is_file():
            df = pd.read_csv(split)
            seen = df[(df["user"].astype(str) == str(uid)) & (df["part"] != "test")]["item"]
            pos = pd.Index(cat["item_ids"]).get_indexer(seen.tolist())
            scores[torch.from_numpy(pos[pos >= 0].astype(np.int64))] = -torch.inf
            seen_note = f" (skipping {int((pos >= 0).sum())} items seen in train/valid)"
        else:
            seen_note = " (no split.csv found: seen items are not skipped; pass --run)"
    top = torch.topk(scores, min(k, len(scores))).indices.tolist()
    titles = cat.get("titles") or [str(i) for i in cat["item_ids"]]
    lines = [f"top-{k} for user {uid}{seen_note}:"]
    for rank, i in enumerate(top, 1):
        lines.append(f"{rank:>3}. {titles[i]}  [item {cat['item_ids'][i]}]")
    return lines
