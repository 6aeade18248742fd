"""Report text: verdicts the shown digits never contradict, no Python reprs in tables."""
from pakd.report.pakd import compare
from pakd.report.tables import fmt, markdown_table


def test_compare_says_tie_when_equal_at_the_shown_digits():
    assert "tie at 4 decimals" in compare("a", 0.09791, "b", 0.09786, lower_is_better=False)
    assert "worse" in compare("a", 0.0979, "b", 0.0990, lower_is_better=False)
    assert "better" in compare("a", 0.84, "b", 0.85, lower_is_better=True)
    assert "Δ -0.0100" in compare("a", 0.84, "b", 0.85, lower_is_better=True)


def test_cells_never_show_reprs():
    assert fmt({"rating": 0.123456, "ranking": 2.0}, 3) == "rating 0.123, ranking 2.000"
    assert fmt([1.25, 3.5], 1) == "1.2–3.5"
    assert fmt(1234567) == "1,234,567" and fmt(None) == "–" and fmt(True) == "yes"
    assert fmt(["ranking", "rating"]) == "ranking, rating" and fmt(2.6e-7) == "2.60e-07"
    assert fmt(0.0) == "0.0000"
    t = markdown_table([{"a": 1.23456, "b": [1.0, 2.0]}], [("a", "A", 2), ("b", "B", 1)])
    assert t.splitlines()[-1] == "| 1.23 | 1.0–2.0 |"
