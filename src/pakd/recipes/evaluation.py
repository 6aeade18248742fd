"""Evaluating a model inside a recipe: its metrics on the test and valid parts, with the
per-user results kept in RUN/per_user/ for confidence intervals (`pakd.stats`)."""
from __future__ import annotations

import torch

from ..config import RunConfig
from ..data.encoding import Encoded
from ..evaluate import evaluate
from ..models.base import RecModel
from ..rundir import RunDir


def evaluate_kept(cfg: RunConfig, rd: RunDir, enc: Encoded, model: RecModel, name: str, *,
                  scores: torch.Tensor | None = None, parts=("test", "valid"),
                  quiet: bool = True) -> dict[str, dict]:
    """{part: metrics} of ``model``; each part's per-user arrays saved under ``name``."""
    out = {}
    for part in parts:
        m = evaluate(model, enc, part, **cfg.eval.kwargs(), scores=scores, quiet=quiet,
                     per_user=True)
        rd.save_per_user(name, part, m.pop("per_user"))
        out[part] = m
    return out
