"""The cubic sparsity schedule and where its steps fall."""
import pytest

from pakd.prune import cubic, prune_steps


def test_cubic_schedule():
    assert cubic(0, 10, 0.5) == 0
    assert cubic(10, 10, 0.5) == pytest.approx(0.5)
    assert cubic(5, 10, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert cubic(20, 10, 0.5) == pytest.approx(0.5)


def test_steps_spread_over_the_window():
    window, steps = prune_steps(total_steps=100, until=0.3, steps=6)
    assert window == 30 and steps == [5, 10, 15, 20, 25, 30]
    assert prune_steps(3, 0.3, 6) == (1, [1])     # a tiny run still prunes, once
