"""The temporal replay's statistics (benchmarks/temporal_replay.py, replay_pool.py) against
hand-computed cases: the share of the gap on the rated item's place, the fold-minus-
re-distilled difference, and users resampled as one cluster across replays."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import replay_pool  # noqa: E402
import temporal_replay  # noqa: E402


def events(rows):
    cols = ["user", "none", "fold", "redistill", "rank_none", "rank_fold", "rank_redistill",
            "unseen", "new_item"]
    return pd.DataFrame(rows, columns=cols)


def test_place_gap_is_the_share_of_the_mean_place_recovered():
    # places 1 - rank/unseen: none 0.5, 0.7; fold 0.8, 0.8; redistill 0.9, 0.9
    df = events([("a", 0, 0, 0, 5, 2, 1, 10, False), ("b", 0, 0, 0, 3, 2, 1, 10, False),
                 ("b", 0, 0, 0, None, 0, 1, 10, False)])          # none lacks the item
    got = temporal_replay.rank_gap(df, np.random.default_rng(0))
    assert got["events"] == 2
    assert got["place_none"] == pytest.approx(0.6)
    assert got["place_fold"] == pytest.approx(0.8)
    assert got["place_redistill"] == pytest.approx(0.9)
    assert got["gap_recovered"] == pytest.approx((0.8 - 0.6) / (0.9 - 0.6))


def test_fold_minus_redistill_weighs_events_and_resamples_users_together():
    # user a: two events (fold - redistill = +1, +1), user b: one event (-1)
    df = events([("a", 0, 1, 0, 0, 0, 0, 5, False), ("a", 0, 1, 0, 0, 0, 0, 5, False),
                 ("b", 0, 0, 1, 0, 0, 0, 5, False)])
    d, lo, hi = replay_pool.diff_ci(df, np.random.default_rng(0))
    assert d == pytest.approx(1 / 3)
    # whole users are drawn: a draw holds only a (+1), only b (-1) or both (+1/3)
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(1.0)
    one = replay_pool.diff_ci(df[df["user"] == "a"], np.random.default_rng(0))
    assert one == pytest.approx([1.0, 1.0, 1.0])


def test_pooled_replays_count_a_user_once(tmp_path):
    import json
    for k, name in enumerate(("w1", "w2")):
        d = tmp_path / name
        d.mkdir()
        df = events([("a", 0, 1, 0, 1, 0, 2, 5, False), ("b", 0, 0, 1, 1, 1, 0, 5, k == 1)])
        df["known"] = True
        df.to_csv(d / "temporal_replay_events.csv.gz", index=False)
        (d / "temporal_replay.json").write_text(json.dumps({"early_cut": k, "late_cut": k + 1}))
    out = tmp_path / "pool"
    replay_pool.main(["--replays", f"{tmp_path / 'w1'},{tmp_path / 'w2'}", "--out", str(out)])
    got = json.loads((out / "replay_pool.json").read_text())
    assert got["known_users"]["events"] == 4 and got["known_users"]["users"] == 2
    assert got["known_users"]["trained_items"]["events"] == 3
    assert got["known_users"]["fold_minus_redistill"][0] == pytest.approx(0.0)


def test_a_baseline_replay_is_compared_on_the_same_events_and_refused_otherwise(tmp_path):
    import json

    def replay(name, fold, items=(1, 2)):
        d = tmp_path / name
        d.mkdir()
        df = events([("a", 0, fold[0], 0, 1, 0, 2, 5, False), ("b", 0, fold[1], 0, 1, 1, 0, 5,
                                                                 True)])
        df["known"], df["item"] = [True, False], list(items)
        df.to_csv(d / "temporal_replay_events.csv.gz", index=False)
        (d / "temporal_replay.json").write_text(json.dumps({"early_cut": 0, "late_cut": 1}))
        return str(d)
    new, old = replay("new", (1.0, 0.0)), replay("old", (0.5, 0.5))
    replay_pool.main(["--replays", new, "--baseline", old, "--out", str(tmp_path / "p")])
    got = json.loads((tmp_path / "p" / "replay_pool.json").read_text())["fold_minus_baseline"]
    assert got["known_users"] == pytest.approx([0.5, 0.5, 0.5])
    assert got["new_items"] == pytest.approx([-0.5, -0.5, -0.5])
    assert got["all"][0] == pytest.approx(0.0)
    other = replay("other", (0.5, 0.5), items=(1, 3))
    with pytest.raises(SystemExit, match="same events"):
        replay_pool.main(["--replays", new, "--baseline", other, "--out", str(tmp_path / "q")])
