"""Per-model defaults, declared once, as data.

The config sections of the teachers (`svd`, `xdeepfm`, `autoint`), of the student and of
the distillation loop take their defaults from these tables, and `pakd.models.build` fills
any architecture entry it is not given from `ARCH`, so a default lives in exactly one place.
"""
from __future__ import annotations

# members trained by `pakd.train.fit` - the three of the origin report, also the order
# that seeds each; student sizes are reported against these three as well as against the
# actual teacher, so a large extra member (EASE holds items^2 weights) never makes a size
# target easy
TEACHERS = ("svd", "xdeepfm", "autoint")
CLOSED_FORM = ("ease", "als", "knn", "uknn", "knn_interp")   # fitted by closed-form solves
# a graph and a sequence member: selectable, not default members; trained step by
# step like TEACHERS (after them in the seed order), but not part of the origin's three
GRAPH_SEQUENCE = ("lightgcn", "sasrec")
TRAINED = TEACHERS + GRAPH_SEQUENCE        # members trained step by step, in seed order
MEMBER_KINDS = TEACHERS + CLOSED_FORM + GRAPH_SEQUENCE
# xdeepfm, als, lightgcn and sasrec are selectable (--models/--algorithms): xDeepFM's ranking
# weight is 0 on valid, leaving it out costs 0.1% of the ensemble's valid RMSE and saves over
# half of a run's time (docs/decisions.md#xdeepfm); knn (rating only) lowers the rating mix's
# valid RMSE on every seed of both protocols (docs/decisions.md#knn), knn_interp beside it
# on every seed again (docs/decisions.md#knn-interp)
DEFAULT_MEMBERS = ("svd", "autoint", "ease", "knn", "knn_interp")
STUDENT = "tower_student"          # the default student
LIGHTWEIGHT = "lightweight_model"  # the earlier one, kept for comparison

# Architecture of each model kind.
ARCH: dict[str, dict] = {
    "svd": {"factors": 64, "rank_factors": 64, "init_std": 0.05},
    # the paper's architecture (Lian et al. 2018)
    "xdeepfm": {"embed_dim": 16, "cin_layers": [128, 128], "dnn": [400, 400], "dropout": 0.0},
    # AutoInt+ (Song et al. 2019): the paper's interacting layers plus a feed-forward branch,
    # here 2 x 400 as xDeepFM's (dnn [] = plain AutoInt): better than plain AutoInt on valid,
    # alone and in the ensemble (docs/decisions.md#autoint)
    "autoint": {"embed_dim": 16, "layers": 3, "heads": 2, "head_dim": 32, "dnn": [400, 400],
                "dropout": 0.0},
    # lam is chosen on the valid part from ease.lambdas; history is the train size
    "ease": {"lam": 500.0, "history": 0},
    # implicit ALS; reg is chosen on the valid part from als.regs
    "als": {"factors": 64, "reg": 1.0, "alpha": 10.0},
    # item neighbourhood on baseline residuals (Koren 2008): k is chosen on the valid part
    # from knn.ks; shrink 100 is the value the paper calls typical, the bias L2s are
    # Surprise's baseline defaults (reg_u 15, reg_i 10); history is the train size
    "knn": {"k": 20, "shrink": 100.0, "reg_user": 15.0, "reg_item": 10.0, "history": 0},
    # LightGCN (He et al. 2020): ranking table `dim`, rating table `rate_dims`, `layers`
    # propagation steps; history (the train graph's edges) comes from the data
    "lightgcn": {"dim": 64, "rate_dims": 64, "layers": 2, "init_std": 0.05, "history": 0},
    # SASRec (Kang & McAuley 2018): the paper's 2 blocks and 50 positions, dropout chosen
    # on valid (docs/decisions.md#graph-sequence); history (the train items in time order)
    # comes from the data
    "sasrec": {"dim": 64, "blocks": 2, "heads": 2, "head_dim": 32, "neurons": 64,
               "max_len": 50, "dropout": 0.5, "rate_dims": 64, "init_std": 0.05,
               "history": 0},
    # item_rows (0 = every item) is set from lightweight.item_coverage and the data
    LIGHTWEIGHT: {"factors": 64, "rank_factors": 64, "hidden": [64], "side_fields": True,
                  "item_rows": 0},
}

# the user neighbourhood, the same model with users and items swapped: the same defaults
ARCH["uknn"] = dict(ARCH["knn"])
# knn with interpolation weights: knn's baseline and similarity, beta pseudo-users of
# shrinkage in the co-residual means (chosen on valid: 2026-12-07_knn_interpolation)
ARCH["knn_interp"] = {**ARCH["knn"], "k": 10, "beta": 30.0, "ridge": 0.0}

# The tower student's settings (the `student` section: its architecture, and how many
# popularity buckets its item rows fall into)
STUDENT_ARCH: dict = {"dim": 64, "rank_dims": 64, "rate_dims": 32, "buckets": 8, "mlp": [],
                      "user_side": "tower", "alpha": 1.0}
# ... and what `pakd.models.build` fills in: bucket_rows, the history and the user rows come
# from the data (`pakd.models.tower.tower_tables`), empty widths mean the full space
ARCH[STUDENT] = {**{k: STUDENT_ARCH[k] for k in ("dim", "rank_dims", "rate_dims", "user_side",
                                                 "alpha")},
                 "hidden": STUDENT_ARCH["mlp"], "bucket_rows": [], "bucket_dims": [],
                 "field_dims": [], "history": 0, "user_rows": 0, "user_dims": 0,
                 "init_std": 0.05}

# How each teacher is trained (`pakd.train.fit`); anything not listed takes the `FitSettings`
# default. Why these values:
# - svd: its ranking factors learn a softmax over the whole catalogue (a [users, items]
#   product per step, cheap at MovieLens sizes; sampled negatives rank worse); L2 0.05 on
#   touched rows keeps the factors from overfitting; rating and ranking factors are
#   disjoint, so each keeps its own best epoch (per_task: valid RMSE, valid NDCG@10).
# - xdeepfm, autoint: the ranking head learns a sampled softmax over each rating's item and
#   4 negatives drawn by train popularity, every logit corrected by its item's log
#   probability of being drawn (logQ), so the head approximates a softmax over the whole
#   catalogue; it ranks better on valid than one uniform negative with BCE, RMSE no worse
#   (docs/decisions.md#member-objectives). Half of the negatives from
#   the retrieval stage's top-100 (negative_sampling retrieval) tied with popularity draws
#   for AutoInt and is opt-in. Their best epoch is the one with the lowest valid loss of
#   both tasks (one body feeds both heads). xDeepFM steps run in chunks of 512 ratings: the
#   same gradient, ~30% less time (its CIN intermediates overflow the caches).
FIT: dict[str, dict] = {
    "svd": {"epochs": 40, "batch_size": 4096, "lr": 0.005, "l2": 0.05, "negatives": 20,
            "ranking_loss": "full", "monitor": "per_task"},
    "xdeepfm": {"epochs": 12, "batch_size": 4096, "lr": 0.002, "negatives": 4,
                "ranking_loss": "softmax", "negative_sampling": "popularity",
                "monitor": "loss", "micro_batch": 512},
    "autoint": {"epochs": 20, "batch_size": 2048, "lr": 0.002, "negatives": 4,
                "ranking_loss": "softmax", "negative_sampling": "popularity",
                "monitor": "loss"},
    # LightGCN learns as SVD does: the ranking table a softmax over the whole catalogue, the
    # rating table the MSE, each output its own best epoch (per_task); lr and row L2 chosen
    # on valid (docs/decisions.md#graph-sequence)
    "lightgcn": {"epochs": 40, "batch_size": 4096, "lr": 0.01, "l2": 0.01,
                 "ranking_loss": "full", "monitor": "per_task"},
    # SASRec (`pakd.train.sequence`): every next item of every train sequence against 1,024
    # popularity negatives shared by a step (logQ-corrected), which ranked as the whole
    # catalogue did on valid in a fraction of the time (docs/decisions.md#graph-sequence);
    # batch_size counts predicted items (positions) per step
    "sasrec": {"epochs": 40, "batch_size": 2048, "lr": 0.001, "l2": 0.05,
               "ranking_loss": "softmax", "negatives": 1024, "patience": 3},
}

# The distillation loop's share of the training settings (same budget for every method).
DISTILL_FIT: dict = {"epochs": 16, "batch_size": 4096, "lr": 0.02, "weight_decay": 1e-5,
                     "l2": 0.05, "negatives": 4, "patience": 3}
# epochs of a student pruned from the trained dense student (`distill.prune_from` dense)
PRUNE_EPOCHS = 8
