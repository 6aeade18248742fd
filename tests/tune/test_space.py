"""The search space: ranges hold the run's settings, a draw becomes valid settings, and a
budget fitted to an architecture is never over the cap - in parameters or saved bytes."""
import pytest
import torch

pytest.importorskip("optuna")
from optuna.trial import FixedTrial  # noqa: E402

from pakd.config import build_config  # noqa: E402
from pakd.distill.students import make_student  # noqa: E402
from pakd.errors import PakdError  # noqa: E402
from pakd.prune import Random  # noqa: E402
from pakd.prune.select import floor_units, ranked, select  # noqa: E402
from pakd.prune.slicing import prune_plan  # noqa: E402
from pakd.tune.space import (Space, apply, bytes_bound, fit_budget, least_model,  # noqa: E402
                             least_params, own_settings, saved_bytes, settings_of)


@pytest.fixture
def cfg():
    return build_config(profile="quick", overrides={"tune.dim": [10, 12], "distill.lr": 0.5})


def test_every_range_holds_the_runs_own_setting(cfg):
    space = Space.around(cfg.tune, cfg)
    assert space.ranges["student.dim"] == (8, 12)          # the quick run's dim 8, widened
    assert space.ranges["distill.lr"][1] == 0.5
    own = own_settings(cfg)
    for name, (lo, hi) in space.ranges.items():
        assert lo <= own[name] <= hi, name
    assert own["student.mlp"] in space.choices["student.mlp"]
    ref = space.reference(cfg, 1234)
    assert ref["distill.student"] == "tower_student" and ref["criterion"] == "fisher"
    assert ref["budget"] == 1234 and ref["student.dim"] == 8 and ref["distill.lr"] == 0.5


def test_a_draw_becomes_the_settings_pakd_distill_takes(cfg):
    space = Space.around(cfg.tune, cfg)
    params = {"distill.student": "lightweight_model", "lightweight.criterion": "magnitude",
              "budget": 500, "lightweight.factors": 6, "lightweight.rank_factors": 5,
              "lightweight.item_coverage": 0.5, "lightweight.hidden": "none",
              "distill.epochs": 2, "distill.lr": 0.01, "distill.kd_ranking_weight": 0.5,
              "distill.kd_rating_weight": 1.5, "distill.kd_feature_weight": 0.0,
              "distill.label_loss_weight": 1.0, "distill.temperature": 2.0,
              "distill.group_floor": 0.1}
    drawn = space.sample(FixedTrial(params), (100, 1000))
    assert drawn == params
    t = apply(cfg, settings_of(drawn, 480))
    assert t.distill.methods == ["magnitude_kd"] and t.distill.budgets == ["480"]
    assert t.distill.ablation is None and t.distill.student == "lightweight_model"
    assert t.lightweight.hidden == [] and t.lightweight.factors == 6
    assert t.distill.temperature == 2.0 and t.distill.group_floor == 0.1


def test_taylor_cannot_be_the_only_criterion_of_the_lightweight_student(cfg):
    cfg = apply(cfg, {"tune.criteria": ["taylor"]})
    with pytest.raises(PakdError, match="taylor needs the tower"):
        Space.around(cfg.tune, cfg)
    space = Space.around(cfg.tune.model_copy(update={"kinds": ["tower_student"]}), cfg)
    assert space.criteria_of("tower_student") == ("criterion", ("taylor",))


def _prune_to(model, target, floor, seed):
    """Remove random units (through the one selector) until at most ``target`` remain."""
    order = ranked(model, Random(torch.Generator().manual_seed(seed)).scores(model), False)
    sel = select(model, order, need=model.n_params() - target,
                 floor=floor_units(model.structure(), floor))
    return prune_plan(model, sel.keep)


@pytest.mark.parametrize("kind", ["tower_student", "lightweight_model"])
def test_a_fitted_budget_keeps_the_student_under_the_cap(cfg, tiny_enc, kind):
    c = apply(cfg, {"distill.student": kind})
    dense = make_student(c, tiny_enc)
    least = least_params(dense, 0.1)
    assert least_model(dense, 0.1).n_params() == least < dense.n_params()
    # parameters: a budget below the least is raised to it, one over the cap lowered to it
    cap = (least + dense.n_params()) // 2
    assert fit_budget(dense, 0.1, 1, "params", cap).target == least
    assert fit_budget(dense, 0.1, 10**9, "params", cap).target == cap
    assert fit_budget(dense, 0.1, 10**9, "params", None).target == dense.n_params() - 1
    below = fit_budget(dense, 0.1, 1, "params", least - 1)
    assert below.target is None and f"{least:,} parameters" in below.reason
    # bytes: whatever units pruning removes to reach the target, the file is within the cap
    small = bytes_bound(dense, least)
    assert saved_bytes(least_model(dense, 0.1)) <= small
    for cap_bytes in (small, small + 37, (small + saved_bytes(dense)) // 2):
        fit = fit_budget(dense, 0.1, cap_bytes, "bytes", cap_bytes)
        assert fit.target is not None and fit.target >= least
        for seed in range(3):
            pruned = _prune_to(make_student(c, tiny_enc), fit.target, 0.1, seed)
            assert pruned.n_params() <= fit.target
            assert saved_bytes(pruned) <= cap_bytes
    assert fit_budget(dense, 0.1, small, "bytes", small).target == least
    assert fit_budget(dense, 0.1, small - 1, "bytes", small - 1).target is None


def test_a_trial_may_start_from_the_runs_dense_student_with_its_architecture(cfg):
    """With the run's dense student, the run's kind draws its start; from dense, no
    architecture is drawn (the dense student's is the run's) and prune epochs replace
    epochs; the run's own trial starts where the run does. Without it, nothing changes."""
    space = Space.around(cfg.tune, cfg, dense=True)
    assert space.starts == ("init", "dense") and space.dense_kind == "tower_student"
    ref = space.reference(cfg, 1234)
    assert ref["distill.prune_from"] == "dense" and "student.dim" not in ref
    assert ref["distill.prune_epochs"] == cfg.distill.prune_epochs and "distill.epochs" not in ref
    params = {"distill.student": "tower_student", "criterion": "magnitude", "budget": 500,
              "distill.prune_from": "dense", "distill.prune_epochs": 2, "distill.lr": 0.01,
              "distill.kd_ranking_weight": 0.5, "distill.kd_rating_weight": 1.5,
              "distill.kd_feature_weight": 0.0, "distill.label_loss_weight": 1.0,
              "distill.temperature": 2.0, "distill.group_floor": 0.1}
    drawn = space.sample(FixedTrial(params), (100, 1000))
    assert drawn == params                      # FixedTrial fails on any other draw
    t = apply(cfg, settings_of(drawn, 480))
    assert t.distill.prune_from == "dense" and t.distill.prune_epochs == 2
    assert t.student == cfg.student and t.distill.epochs == cfg.distill.epochs
    fresh = {**{k: v for k, v in params.items() if k not in ("distill.prune_from",
                                                             "distill.prune_epochs")},
             "distill.prune_from": "init", "distill.epochs": 2, "student.dim": 10,
             "student.rank_dims": 8, "student.rate_dims": 4, "student.buckets": 3,
             "student.alpha": 0.5, "student.mlp": "none"}
    assert apply(cfg, settings_of(space.sample(FixedTrial(fresh), (100, 1000)), 480)
                 ).distill.prune_from == "init"
    # no dense student: the space and the run's trial are as before, dense-only refused
    plain = Space.around(cfg.tune, cfg)
    assert plain.starts == ("init",) and "distill.prune_from" not in plain.reference(cfg, 9)
    assert settings_of(plain.reference(cfg, 9), 9)["distill.prune_from"] == "init"
    with pytest.raises(PakdError, match="--tune-starts dense needs the run's trained dense"):
        Space.around(cfg.tune.model_copy(update={"starts": ["dense"]}), cfg)
