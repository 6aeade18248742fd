"""The valid-part selection behind every closed-form fit (`pakd.train.select`)."""
import math

import pytest

from pakd.train.select import best_on_grid, best_on_simplex, simplex_grid


def test_best_on_grid_picks_the_point_a_hand_computation_says():
    """score(lam) = -(log10 lam - 1.2)^2 over 1, 10, 100, 1000: the distances to 1.2 are
    1.2, 0.2, 0.8, 1.8, so 10 wins with -0.04; the weights kept are the ones fitted at 10."""
    state = {}

    def score(lam):
        state["fitted"] = lam
        return -(math.log10(lam) - 1.2) ** 2

    got = best_on_grid([1, 10, 100, 1000], score, label="lam", keep=lambda: dict(state))
    assert got.value == 10 and got.score == pytest.approx(-0.04)
    assert got.kept == {"fitted": 10}             # snapshot taken right after its fit
    assert [h["lam"] for h in got.history] == [1, 10, 100, 1000]
    assert [round(h["valid_ndcg@10"], 6) for h in got.history] == [-1.44, -0.04, -0.64, -3.24]


def test_ties_keep_the_earlier_point_as_max_does():
    grid = [0.05, 0.1, 0.25, 0.5]
    score = {0.05: 0.1, 0.1: 0.3, 0.25: 0.3, 0.5: 0.2}.get
    assert best_on_grid(grid, score).value == max(grid, key=score) == 0.1


def test_simplex_grid_and_the_walk_reach_a_hand_computed_peak():
    """Two members, peak at (0.33, 0.67): the 0.1 grid's best is (0.3, 0.7); one 0.05 move
    to member 0 gives (0.35, 0.65), closer (0.02 vs 0.03 per coordinate); the next,
    (0.4, 0.6), is farther, so the walk stops at (0.35, 0.65)."""
    assert len(simplex_grid(2)) == 11 and len(simplex_grid(4)) == 56
    w, best = best_on_simplex(["a", "b"], lambda w: -abs(w[0] - 0.33) - abs(w[1] - 0.67))
    assert w == pytest.approx((0.35, 0.65)) and best == pytest.approx(-0.04)


def test_an_empty_grid_is_refused():
    with pytest.raises(ValueError):
        best_on_grid([], lambda v: 0.0)


def test_grid_edge_names_the_side_and_ignores_one_value_grids():
    from pakd.train.select import grid_edge
    assert grid_edge(50.0, [500.0, 50.0, 100.0]) == "lower"
    assert grid_edge(500.0, [500.0, 50.0, 100.0]) == "upper"
    assert grid_edge(100.0, [500.0, 50.0, 100.0]) is None
    assert grid_edge(100.0, [100.0]) is None and grid_edge(100.0, [100.0, 100.0]) is None


def test_note_edge_warns_at_an_edge_and_says_a_single_value_was_given(caplog):
    import logging

    from pakd.train.select import note_edge
    with caplog.at_level(logging.INFO, logger="pakd"):
        assert note_edge("ease", "lam", 50.0, [50.0, 100.0]) == "lower"
        assert note_edge("ease", "lam", 100.0, [100.0]) is None
    text = caplog.text
    assert "lower edge of the values tried (50, 100)" in text
    assert "one lam given (100), so it is used, not chosen" in text
