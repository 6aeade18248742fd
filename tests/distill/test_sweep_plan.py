"""The sweep's plan: who waits for whom."""
from pakd.config import build_config
from pakd.distill.budgets import parse
from pakd.distill.sweep import DENSE, Job, plan, prune_epochs, reference_job


def _plan(**distill):
    cfg = build_config(overrides={f"distill.{k}": v for k, v in distill.items()})
    budgets = [parse(b) for b in cfg.distill.budgets]
    return cfg, plan(cfg, budgets, {b.label: 1000 * (i + 1) for i, b in enumerate(budgets)})


def test_pruned_students_wait_for_the_dense_student_they_start_from():
    cfg, (ready, waiting) = _plan(budgets=["1%", "3%"], ablation=None,
                                  methods=["fisher_kd", "magnitude_kd", "fisher_ft",
                                           "mf_labels", "final_kd"])
    order = ready + waiting
    assert ready[0] == Job("dense_kd", DENSE, None)      # trained though not listed, first
    assert {j.method for j in ready} == {"dense_kd", "fisher_ft", "mf_labels"}
    # every job comes after the job it starts from or copies
    for j in order:
        ref = reference_job(cfg.distill, j, order)
        if j.method in ("fisher_kd", "magnitude_kd"):
            assert ref == Job("dense_kd", DENSE, None)
        elif j.method == "final_kd":
            assert ref == Job("fisher_kd", j.budget, j.target)
        else:
            assert ref is None
        assert ref is None or order.index(ref) < order.index(j)


def test_pruning_from_init_waits_for_nothing_and_trains_no_dense_student():
    cfg, (ready, waiting) = _plan(budgets=["3%"], ablation=None, prune_from="init",
                                  methods=["fisher_kd", "magnitude_kd"])
    assert waiting == [] and {j.method for j in ready} == {"fisher_kd", "magnitude_kd"}


def test_a_given_dense_student_is_pruned_and_none_is_trained(tiny_enc, tmp_path):
    """--dense-from: the pruned students start from the saved student named, no dense_kd
    is planned; one of another architecture is refused, naming it."""
    import pytest

    from pakd.distill.students import make_student
    from pakd.distill.sweep import Context, train_student
    from pakd.errors import PakdError
    from pakd.models import save
    cfg, (ready, waiting) = _plan(budgets=["3%"], ablation=None, dense_from="x/dense",
                                  methods=["fisher_kd", "magnitude_kd"])
    assert ready == [] and {j.method for j in waiting} == {"fisher_kd", "magnitude_kd"}
    cfg = build_config(profile="quick", overrides={"student.dim": 6})
    other = make_student(build_config(profile="quick", overrides={"student.dim": 5}), tiny_enc)
    save(other, tmp_path / "other", meta={})
    ctx = Context(cfg, None, tiny_enc, None, {}, {})
    with pytest.raises(PakdError, match="another architecture"):
        train_student(ctx, Job("fisher_kd", "3%", 100), str(tmp_path / "other"))


def test_students_that_keep_little_of_the_dense_one_prune_for_longer():
    cfg = build_config(overrides={"distill.prune_epochs": 8})
    dc = cfg.distill                          # stretch 2 at or below 1/8 of the dense student
    assert prune_epochs(dc, 125, 1000) == 16 and prune_epochs(dc, 126, 1000) == 8
    assert prune_epochs(dc, None, 1000) == 8                 # not pruned: no stretch
    dc = dc.model_copy(update={"prune_stretch": 1.5, "stretch_below": 0.5})
    assert prune_epochs(dc, 500, 1000) == 12 and prune_epochs(dc, 501, 1000) == 8
