"""Choosing the best student: on the valid part, by a rule a few parameters cannot flip."""
from pakd.recipes.distill import choose_best, targets

TEACHER = {"rmse": 0.85, "ndcg@10": 0.22, "params": 1000, "valid": {"rmse": 0.86, "ndcg@10": 0.20}}


def row(method, ratio, params, v_rmse, v_ndcg, t_rmse=0.9, t_ndcg=0.1):
    return {"method": method, "pruning_ratio": ratio, "params": params, "rmse": t_rmse,
            "ndcg@10": t_ndcg, "valid": {"rmse": v_rmse, "ndcg@10": v_ndcg}}


def test_highest_ratio_within_tolerance_then_best_valid_balance():
    rows = [row("fisher_kd", 0.5, 500, 0.86, 0.20), row("fisher_kd", 0.75, 250, 0.87, 0.195),
            row("magnitude_kd", 0.75, 247, 0.87, 0.190), row("random_kd", 0.9, 100, 0.95, 0.10)]
    best, rule = choose_best(rows, TEACHER, 0.02, 0.05)
    assert (best["method"], best["pruning_ratio"]) == ("fisher_kd", 0.75)   # not the 3 fewer
    assert "valid" in rule


def test_test_figures_do_not_choose():
    rows = [row("a", 0.5, 500, 0.86, 0.20, t_ndcg=0.01), row("b", 0.5, 500, 0.90, 0.15, t_ndcg=0.5)]
    best, _ = choose_best(rows, TEACHER, 0.02, 0.05)
    assert best["method"] == "a"


def test_fallback_is_best_valid_balance():
    rows = [row("a", 0.5, 500, 0.95, 0.15), row("b", 0.75, 250, 0.90, 0.16)]
    best, rule = choose_best(rows, TEACHER, 0.02, 0.05)
    assert best["method"] == "b" and "no student" in rule
    assert choose_best([], TEACHER, 0.02, 0.05)[0] is None


def test_targets_compare_fisher_kd_with_each_baseline_by_paired_intervals():
    rows = [row("fisher_kd", 0.5, 500, 0, 0, t_rmse=0.85, t_ndcg=0.215),
            row("magnitude_kd", 0.5, 500, 0, 0, t_rmse=0.84, t_ndcg=0.2)]
    # the baseline minus fisher_kd: RMSE -0.01 (interval below 0), NDCG -0.015 (spans 0)
    rows[1]["paired"] = {"fisher_kd": {"rmse": [-0.01, -0.02, -0.004],
                                       "ndcg@10": [-0.015, -0.03, 0.002]}}
    t = targets(rows, TEACHER)
    assert t["ratio_0.5"]["rmse_within_1pct"] and t["ratio_0.5"]["ndcg_within_3pct"]
    c = t["fisher_kd_vs_baselines"]["magnitude_kd@0.5"]
    assert c["diff_rmse"] == [0.01, 0.004, 0.02] and c["verdict_rmse"] == "worse"
    assert c["diff_ndcg@10"] == [0.015, -0.002, 0.03] and c["verdict_ndcg@10"] == "tie"


def test_size_targets_measure_against_the_three_origin_members():
    """A large teacher (ease adds items^2) does not make the size targets easy: the rows are
    sized against origin_params, and the largest fisher_kd row within each budget is read."""
    teacher = {**TEACHER, "params": 100_000, "origin_params": 2_000}
    rows = [row("fisher_kd", 0.5, 1_000, 0, 0, t_rmse=0.855, t_ndcg=0.2145),   # 50%: no budget
            row("fisher_kd", 0.9, 190, 0, 0, t_rmse=0.858, t_ndcg=0.2140),     # 9.5%
            row("fisher_kd", 0.97, 60, 0, 0, t_rmse=0.868, t_ndcg=0.21),        # 3%
            row("magnitude_kd", 0.97, 50, 0, 0, t_rmse=0.85, t_ndcg=0.22)]      # not fisher_kd
    t = targets(rows, teacher)
    ten, three = t["within_10pct_of_origin"], t["within_3pct_of_origin"]
    assert ten["params"] == 190 and ten["params_vs_origin_pct"] == 9.5
    assert ten["ndcg_at_least_97pct"] and ten["rmse_at_most_101pct"]   # 97.3%, 100.9%
    assert three["params"] == 60
    assert three["ndcg_at_least_93pct"] and not three["rmse_at_most_102pct"]  # 95.5%, 102.1%


def test_item_coverage_gives_rows_to_the_fewest_items_holding_that_share(tiny_enc):
    import torch

    from pakd.config import build_config
    from pakd.recipes.distill import student_arch
    counts = torch.bincount(tiny_enc.parts["train"].item, minlength=tiny_enc.n_items)
    top = torch.sort(counts, descending=True).values
    cfg = build_config()
    cfg.student.item_coverage = 1.0
    assert student_arch(cfg, tiny_enc)["item_rows"] == 0            # every item
    share = float(top[:3].sum() / top.sum())
    cfg.student.item_coverage = share
    assert student_arch(cfg, tiny_enc)["item_rows"] == 3
    cfg.student.item_coverage = share + 1e-6      # a hair more needs the fourth item
    assert student_arch(cfg, tiny_enc)["item_rows"] == 4
