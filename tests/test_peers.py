"""benchmarks/peers.py: peers tuned on the valid part pick what planted data favours, never
what the test part would, and say when a choice sits at the edge of its grid."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location(
    "peers", Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py")
peers = importlib.util.module_from_spec(_spec)
sys.modules["peers"] = peers          # dataclasses look their module up while defining
_spec.loader.exec_module(peers)

quiet = dict(log=lambda *_: None)


def test_tune_takes_the_best_valid_point_and_widens_a_grid_at_its_edge():
    """A planted valid figure peaking at lam = 800: the grid 10, 100 has it past its upper
    edge; values beyond it are tried (1000, then 10000, which is worse) and the best is
    reported interior."""
    fig = lambda p: -abs(np.log(p["lam"] / 800.0))            # noqa: E731
    t = peers.tune({"lam": [10.0, 100.0]}, lambda p: (fig(p), p["lam"]),
                   minimise=False, **quiet)
    assert t.best == {"lam": 1000.0} and t.kept == 1000.0
    assert t.axes["lam"] == [10.0, 100.0, 1000.0, 10000.0]
    assert not t.at_edge and t.note == ""
    narrow = peers.tune({"lam": [10.0, 30.0]}, lambda p: (fig(p), None), minimise=False,
                        extend=False, **quiet)
    assert narrow.best == {"lam": 30.0} and narrow.at_edge == {"lam": "upper"}
    assert "upper edge" in narrow.note


def test_tune_with_one_point_says_it_chose_nothing():
    t = peers.tune({"factors": [64], "reg": [0.1]}, lambda p: (0.5, None), minimise=True,
                   **quiet)
    assert t.best == {"factors": 64, "reg": 0.1} and t.at_edge == {}
    assert "one value, given rather than chosen" in t.note
    with pytest.raises(ValueError, match="no value to try for reg"):
        peers.tune({"reg": []}, lambda p: (0.0, None), minimise=True, **quiet)


def _frame(rows):
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp", "part"])


def test_surprise_svd_is_tuned_on_valid_not_on_test():
    """Ratings are a user offset plus an item offset; valid follows them, so training (a
    learning rate that moves, enough epochs) wins on valid. The test part holds the global
    mean for every pair, so the untrained point would win there: the choice shows which
    part chose."""
    pytest.importorskip("surprise")
    rng = np.random.default_rng(0)
    bu, bi = rng.normal(0, 1.0, 30), rng.normal(0, 1.0, 40)
    rows = []
    for u in range(30):
        for j, i in enumerate(rng.choice(40, 20, replace=False)):
            r = float(np.clip(3.0 + bu[u] + bi[i], 1, 5))
            part = "train" if j < 16 else ("valid" if j < 18 else "test")
            rows.append((u, int(i), 3.0 if part == "test" else r, j, part))
    d = peers.Data.of(_frame(rows), scale=(1.0, 5.0))
    grid = {"n_factors": [2], "lr_all": [1e-6, 0.02], "reg_all": [0.02], "n_epochs": [1, 40]}
    got = peers.surprise_svd(d, 0, grid=grid, extend=False, **quiet)
    assert got["settings"]["lr_all"] == 0.02 and got["settings"]["n_epochs"] == 40
    tried = {(r["lr_all"], r["n_epochs"]): r["figure"] for r in got["tried"]}
    assert tried[(0.02, 40)] < tried[(1e-6, 1)] - 0.2         # valid really separates them
    assert got["valid_rmse"] == tried[(0.02, 40)]
    # on test (every rating 3.0) the untrained point would have been better
    assert got["rmse"] > 0.3


def test_als_picks_enough_factors_for_planted_communities():
    """Four user communities, each rating only its own 6 items: one factor cannot tell four
    groups apart, eight can; valid items come from the user's own community."""
    pytest.importorskip("implicit")
    rng = np.random.default_rng(1)
    rows = []
    for u in range(40):
        c = u % 4
        own = rng.permutation(np.arange(6) + 6 * c)
        for j, i in enumerate(own):
            rows.append((u, int(i), 4.0, j, "train" if j < 4 else ("valid" if j == 4 else "test")))
    d = peers.Data.of(_frame(rows))
    got = peers.als(d, 0, grid={"factors": [1, 8], "regularization": [0.01], "alpha": [5.0]},
                    extend=False, **quiet)
    tried = {r["factors"]: r["figure"] for r in got["tried"]}
    assert got["settings"]["factors"] == 8 and tried[8] > tried[1] + 0.1
    assert got["ndcg@10"] > 0.3


def test_ease_reports_its_chosen_lambda_and_the_grid_it_searched():
    rng = np.random.default_rng(2)
    rows = [(u, int(i), 4.0, j, "train" if j < 6 else ("valid" if j == 6 else "test"))
            for u in range(25) for j, i in enumerate(rng.choice(15, 8, replace=False))]
    d = peers.Data.of(_frame(rows))
    got = peers.ease(d, grid={"lam": [1.0, 10.0, 100.0]}, **quiet)
    assert got["settings"]["lam"] in got["grid"]["lam"]
    assert got["valid_ndcg@10"] == max(r["figure"] for r in got["tried"])
    assert got["points"] == len(got["tried"]) >= 3
    assert (got["at_edge"] == {}) == ("edge" not in got["note"])
