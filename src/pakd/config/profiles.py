"""Profiles: named sets of settings applied under whatever the user sets.

``default`` is the full experiment; ``quick`` shrinks every model and budget, and keeps
three students (fisher_kd, magnitude_kd, scratch; no ablation), so the whole pipeline runs
in about a minute (the tests use it, asking for the other students explicitly); `pakd tune`
searches small students for few epochs.

Either profile is then fitted to the split's size (`for_data`, applied when a run's split
is first made): a table larger than the one the defaults were chosen on trains fewer
epochs (about the same optimiser steps), drops full-catalogue softmax losses whose
per-epoch cost would be hours, and leaves EASE out when its items x items weights are
beyond its limit. A setting the user gave is never changed, and the run's run.yaml holds
the values used.
"""
from __future__ import annotations

from typing import Any

from .defaults import DEFAULT_MEMBERS, DISTILL_FIT, FIT, GRAPH_SEQUENCE, PRUNE_EPOCHS

# the evidence run trains the selectable graph and sequence members too, so that their
# ensemble weights and costs are measured on every seed
FULL_MEMBERS = list(DEFAULT_MEMBERS + GRAPH_SEQUENCE)

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    # every control at every budget and the ablation: the evidence run (`pakd run --seeds
    # 0,1,2 --profile full`); the default sweep trains PAKD, the labels-only MF of each
    # budget and the dense student only, so that `make run` stays short
    "full": {
        "train.models": FULL_MEMBERS, "ensemble.algorithms": FULL_MEMBERS,
        "distill.methods": ["fisher_kd", "taylor_kd", "magnitude_kd", "random_kd", "scratch",
                            "final_kd", "mf_labels", "lightweight_kd", "dense_kd"],
        "distill.ablation": "true",          # at the smallest budget
    },
    "quick": {
        "svd.epochs": 2, "svd.factors": 8, "svd.rank_factors": 8, "svd.negatives": 4,
        "xdeepfm.epochs": 1, "xdeepfm.embed_dim": 4, "xdeepfm.cin_layers": [8, 8],
        "xdeepfm.dnn": [16],
        "autoint.epochs": 1, "autoint.embed_dim": 4, "autoint.layers": 1, "autoint.heads": 1,
        "autoint.head_dim": 4, "autoint.dnn": [16],
        "ensemble.calibration_users": 32, "ensemble.rerank_n": [20],
        "ease.lambdas": [100.0],
        "als.factors": 8, "als.iterations": 3, "als.regs": [1.0, 10.0], "knn.ks": [10, 20],
        "uknn.ks": [10, 20], "knn_interp.ks": [5, 10],
        "lightgcn.epochs": 2, "lightgcn.dim": 8, "lightgcn.rate_dims": 8,
        "sasrec.epochs": 2, "sasrec.dim": 8, "sasrec.blocks": 1, "sasrec.heads": 1,
        "sasrec.head_dim": 8, "sasrec.neurons": 8, "sasrec.max_len": 10, "sasrec.rate_dims": 4,
        "fisher.sample": 512, "fisher.validate_units": 12, "fisher.plan_eval_users": 50,
        "student.dim": 8, "student.rank_dims": 8, "student.rate_dims": 4, "student.buckets": 3,
        "lightweight.factors": 8, "lightweight.rank_factors": 8, "lightweight.hidden": [8],
        "distill.budgets": ["0.5"], "distill.epochs": 2, "distill.prune_epochs": 2,
        "distill.methods": ["fisher_kd", "magnitude_kd", "scratch"], "distill.ablation": None,
        "distill.negatives": 4, "distill.batch_size": 8192,
        "distill.prune_steps": 2, "distill.list_top": 10, "distill.list_random": 10,
        "distill.feature_dim": 8, "distill.check_units": 12,
        "bench.seconds": 0.1, "bench.rounds": 1,
        "tune.dim": [4, 16], "tune.rank_dims": [4, 16], "tune.rate_dims": [2, 8],
        "tune.buckets": [2, 4], "tune.mlp": ["none", "8"], "tune.factors": [4, 16],
        "tune.hidden": ["none", "8"], "tune.epochs": [1, 3], "tune.prune_epochs": [1, 2],
        "tune.startup": 2,
        "tune.prune_startup": 2, "tune.latency_seconds": 0.05, "tune.timeout": 600.0,
    },
}


# ----------------------------------------------------------------------------- data size

# train ratings of the split the default epochs were chosen on (ml-latest-small, the
# default user_ratio split, seed 0)
REFERENCE_TRAIN_RATINGS = 80_650
# a split k times larger trains 1/k of the epochs (the nearest whole number, at least one):
# about the optimiser steps the defaults take on the reference, since each epoch holds k
# times the steps; the best epoch is still the one chosen on valid. On the reference the
# teachers' best valid epochs came after 118 (SVD's rating factors) to 453 steps (its
# ranking factors), xDeepFM's after 177; one xDeepFM epoch on a table of ML-1M's shape is
# 179 steps of several minutes on 2 cores - time as much as accuracy sets the rule
# (docs/decisions.md#epochs)
MIN_EPOCHS = 1
EPOCHS = ("svd.epochs", "xdeepfm.epochs", "autoint.epochs", "distill.epochs",
          "distill.prune_epochs")
# train ratings x catalogue items above which a softmax over the whole catalogue (SVD's
# ranking factors, the student's label ranking) gives way to a sampled softmax: at ~7e7
# (rating, item) cells a second on 2 cores (benchmarks/scale.py), 2e10 is ~5 min an epoch
FULL_SOFTMAX_CELLS = 2e10


def _base(profile: str, key: str) -> Any:
    """A setting's value under ``profile`` before any scaling (profile, else the per-model
    default table; None for a setting those tables do not hold)."""
    if key in PROFILES[profile]:
        return PROFILES[profile][key]
    section, name = key.split(".")
    distill = {**DISTILL_FIT, "prune_epochs": PRUNE_EPOCHS}
    return (distill if section == "distill" else FIT.get(section, {})).get(name)


def for_data(profile: str, train_ratings: int, items: int, *, ease_max_items: int,
             knn_max_items: int = 30_000, knn_interp_max_items: int = 20_000) -> dict[str, Any]:
    """The settings of ``profile`` that change for a split of ``train_ratings`` ratings
    over ``items`` items, the catalogue limits of the items^2 members being
    ``ease_max_items``, ``knn_max_items`` and ``knn_interp_max_items`` (the run's
    `<member>.max_items`) - dotted path -> value; empty at the reference size or below.
    They sit between the profile and the user's settings, so anything the user set wins."""
    out: dict[str, Any] = {}
    k = train_ratings / REFERENCE_TRAIN_RATINGS
    if k > 1:
        for key in EPOCHS:
            e0 = int(_base(profile, key))
            out[key] = max(MIN_EPOCHS, round(e0 / k))
    if train_ratings * items > FULL_SOFTMAX_CELLS:
        for member in ("svd", "lightgcn"):
            if _base(profile, f"{member}.ranking_loss") == "full":
                out[f"{member}.ranking_loss"] = "softmax"
                out[f"{member}.negative_sampling"] = "popularity"
        out["distill.label_ranking"] = "softmax"
    over = {m for m, limit in (("ease", ease_max_items), ("knn", knn_max_items),
                               ("knn_interp", knn_interp_max_items)) if items > limit}
    if over:
        members = [m for m in (_base(profile, "train.models") or DEFAULT_MEMBERS)
                   if m not in over]
        out["train.models"] = members
        out["ensemble.algorithms"] = members
    return {k: v for k, v in out.items() if v != _base(profile, k)}
