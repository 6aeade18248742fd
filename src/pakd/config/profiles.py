"""Profiles: named sets of settings applied under whatever the user sets.

``default`` is the full experiment; ``quick`` shrinks every model and budget, and keeps
three students (fisher_kd, magnitude_kd, scratch; no ablation), so the whole pipeline runs
in about a minute (the tests use it, asking for the other students explicitly).
"""
from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {
        "svd.epochs": 2, "svd.factors": 8, "svd.rank_factors": 8, "svd.negatives": 4,
        "xdeepfm.epochs": 1, "xdeepfm.embed_dim": 4, "xdeepfm.cin_layers": [8, 8],
        "xdeepfm.dnn": [16],
        "autoint.epochs": 1, "autoint.embed_dim": 4, "autoint.layers": 1, "autoint.heads": 1,
        "autoint.head_dim": 4, "autoint.dnn": [16],
        "ensemble.calibration_users": 32, "ensemble.rerank_n": [20],
        "ease.lambdas": [100.0],
        "als.factors": 8, "als.iterations": 3, "als.regs": [1.0, 10.0],
        "fisher.sample": 512, "fisher.validate_units": 12, "fisher.plan_eval_users": 50,
        "student.factors": 8, "student.rank_factors": 8, "student.hidden": [8],
        "distill.pruning_ratios": [0.5], "distill.epochs": 2,
        "distill.methods": ["fisher_kd", "magnitude_kd", "scratch"], "distill.ablation": False,
        "distill.negatives": 4, "distill.batch_size": 8192,
        "distill.prune_steps": 2, "distill.list_top": 10, "distill.list_random": 10,
        "distill.feature_dim": 8, "distill.check_units": 12,
        "bench.seconds": 0.1, "bench.rounds": 1,
    },
}
