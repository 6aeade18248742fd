"""Choosing the best student (on the valid part, by a rule a few parameters cannot flip),
the size targets, and the budgets setting."""
import pytest

from pakd.distill.budgets import parse, targets as budget_targets
from pakd.distill.outcome import choose_best, targets
from pakd.errors import PakdError

TEACHER = {"rmse": 0.85, "ndcg@10": 0.22, "params": 1000, "valid": {"rmse": 0.86, "ndcg@10": 0.20}}


def row(method, budget, params, v_rmse, v_ndcg, t_rmse=0.9, t_ndcg=0.1, target=None):
    return {"method": method, "budget": budget, "params": params, "rmse": t_rmse,
            "target_params": target or params, "ndcg@10": t_ndcg,
            "valid": {"rmse": v_rmse, "ndcg@10": v_ndcg}}


def test_smallest_budget_within_tolerance_then_best_valid_balance():
    rows = [row("fisher_kd", "50%", 500, 0.86, 0.20), row("fisher_kd", "25%", 250, 0.87, 0.195),
            row("magnitude_kd", "25%", 247, 0.87, 0.190, target=250),
            row("random_kd", "10%", 100, 0.95, 0.10)]
    best, rule = choose_best(rows, TEACHER, 0.02, 0.05)
    assert (best["method"], best["budget"]) == ("fisher_kd", "25%")   # not the 3 fewer
    assert "valid" in rule


def test_test_figures_do_not_choose():
    rows = [row("a", "5%", 500, 0.86, 0.20, t_ndcg=0.01), row("b", "5%", 500, 0.90, 0.15, t_ndcg=0.5)]
    best, _ = choose_best(rows, TEACHER, 0.02, 0.05)
    assert best["method"] == "a"


def test_fallback_is_best_valid_balance():
    rows = [row("a", "50%", 500, 0.95, 0.15), row("b", "25%", 250, 0.90, 0.16)]
    best, rule = choose_best(rows, TEACHER, 0.02, 0.05)
    assert best["method"] == "b" and "no student" in rule
    assert choose_best([], TEACHER, 0.02, 0.05)[0] is None


def test_targets_compare_fisher_kd_with_each_baseline_by_paired_intervals():
    teacher = {**TEACHER, "origin_params": 10_000}
    rows = [row("fisher_kd", "3%", 300, 0, 0, t_rmse=0.855, t_ndcg=0.2165),
            row("magnitude_kd", "3%", 300, 0, 0, t_rmse=0.84, t_ndcg=0.2)]
    rows[0]["paired"] = {"teacher": {"ndcg@10": [-0.0035, -0.01, 0.003]}}
    # the baseline minus fisher_kd: RMSE -0.015 (interval below 0), NDCG -0.0165 (spans 0)
    rows[1]["paired"] = {"fisher_kd": {"rmse": [-0.015, -0.02, -0.004],
                                       "ndcg@10": [-0.0165, -0.03, 0.002]}}
    t = targets(rows, teacher)
    three = t["budget_3%"]
    assert three["ndcg_at_least_98pct"] and three["rmse_at_most_101pct"]   # 98.4%, 100.6%
    c = t["fisher_kd_vs_baselines"]["magnitude_kd@3%"]
    assert c["diff_rmse"] == [0.015, 0.004, 0.02] and c["verdict_rmse"] == "worse"
    assert c["diff_ndcg@10"] == [0.0165, -0.002, 0.03] and c["verdict_ndcg@10"] == "tie"


def test_the_five_percent_target_asks_for_a_tie_with_the_teacher():
    rows = [row("fisher_kd", "5%", 500, 0, 0, t_rmse=0.85, t_ndcg=0.221)]
    rows[0]["paired"] = {"teacher": {"ndcg@10": [0.001, -0.004, 0.006]}}
    assert targets(rows, TEACHER)["budget_5%"]["ndcg_ties_or_beats_teacher"]
    rows[0]["paired"]["teacher"]["ndcg@10"] = [-0.001, -0.006, 0.004]   # point below
    assert not targets(rows, TEACHER)["budget_5%"]["ndcg_ties_or_beats_teacher"]


def test_budget_entries_are_shares_counts_or_ratios():
    assert parse("3%").target(dense=10_000, origin=2_000_000) == 60_000
    assert parse("48k").target(dense=10_000, origin=None) == 48_000
    assert parse(48000).label == "48000"
    assert parse("0.4").target(dense=10_000, origin=None) == 6_000
    assert parse(0.4).kind == "ratio"
    for bad in ("", "-3%", "150%", "abc", "0", "1.5"):
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(PakdError, match="origin members"):
        parse("3%").target(dense=10_000, origin=None)


def test_budgets_outside_the_student_are_refused_with_the_fix():
    b = [parse("3%"), parse("0.5")]
    assert budget_targets(b, dense=10_000, origin=100_000, least=100) == {"3%": 3000, "0.5": 5000}
    with pytest.raises(PakdError, match="not below the dense"):
        budget_targets([parse("20%")], dense=10_000, origin=100_000)
    with pytest.raises(PakdError, match="below the 500"):
        budget_targets([parse("0.1%")], dense=10_000, origin=100_000, least=500)
    with pytest.raises(PakdError, match="same size twice"):
        budget_targets([parse("3%"), parse("3000")], dense=10_000, origin=100_000)


def test_item_coverage_gives_rows_to_the_fewest_items_holding_that_share(tiny_enc):
    import torch

    from pakd.config import build_config
    from pakd.distill.students import lightweight_arch
    counts = torch.bincount(tiny_enc.parts["train"].item, minlength=tiny_enc.n_items)
    top = torch.sort(counts, descending=True).values
    cfg = build_config()
    cfg.lightweight.item_coverage = 1.0
    assert lightweight_arch(cfg, tiny_enc)["item_rows"] == 0            # every item
    share = float(top[:3].sum() / top.sum())
    cfg.lightweight.item_coverage = share
    assert lightweight_arch(cfg, tiny_enc)["item_rows"] == 3
    cfg.lightweight.item_coverage = share + 1e-6      # a hair more needs the fourth item
    assert lightweight_arch(cfg, tiny_enc)["item_rows"] == 4
