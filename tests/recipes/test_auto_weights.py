"""The ranking-weight search of `--weights auto`."""
import pytest

from pakd.recipes.ensemble import search_simplex


@pytest.mark.parametrize("target", [(0.6, 0.3, 0.1), (0.15, 0.35, 0.1, 0.4), (0.0, 1.0)])
def test_simplex_search_finds_the_best_convex_weights(target):
    """A peaked score: the grid plus the 0.05 moves reach the peak exactly."""
    names = [f"m{i}" for i in range(len(target))]
    calls = []

    def score(w):
        calls.append(w)
        return -sum((a - b) ** 2 for a, b in zip(w, target))

    w, best = search_simplex(names, score)
    assert w == pytest.approx(target, abs=1e-9) and best == pytest.approx(0.0, abs=1e-12)
    assert sum(w) == pytest.approx(1.0)
    assert len(calls) == len(set(calls))        # every point scored once
