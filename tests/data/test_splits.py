import pytest

from pakd.data.splits import make_split, read_split
from pakd.errors import PakdError


@pytest.mark.parametrize("method", ["user_ratio", "global_ratio", "temporal", "user_last_k",
                                    "leave_one_out"])
def test_split_is_seeded_and_byte_identical(tmp_path, tiny_ratings, method):
    a = make_split(tiny_ratings, method=method, seed=3)
    b = make_split(tiny_ratings, method=method, seed=3)
    a.write(tmp_path / "a")
    b.write(tmp_path / "b")
    assert (tmp_path / "a/split.csv").read_bytes() == (tmp_path / "b/split.csv").read_bytes()
    back = read_split(tmp_path / "a")
    assert back.frame["part"].tolist() == a.frame["part"].tolist()
    assert set(a.frame["part"]) <= {"train", "valid", "test"}


def test_user_ratio_per_user_shares_and_train_floor(tiny_ratings):
    s = make_split(tiny_ratings, method="user_ratio", seed=0)
    per_user = s.frame.groupby("user")["part"].value_counts().unstack(fill_value=0)
    # 12 ratings per user: round(1.2) = 1 valid and 1 test before the cold rule
    assert (per_user["train"] == 10).all()
    assert (per_user["valid"] <= 1).all() and (per_user["test"] <= 1).all()
    other = make_split(tiny_ratings, method="user_ratio", seed=1)
    assert other.frame["part"].tolist() != s.frame["part"].tolist()


def test_cold_rule_drops_unseen_items_and_counts_them(tiny_ratings):
    r = tiny_ratings.copy()
    r.loc[len(r)] = (1, 999, 4.0, 5)  # an item nobody else rated
    s = make_split(r, method="user_last_k", k=1, seed=0)
    # item 999 has the oldest timestamp of user 1, so it lands in train and stays
    assert 999 in set(s.part("train")["item"])
    r.loc[len(r) - 1, "timestamp"] = 10**10  # now it is user 1's newest -> test -> cold
    s = make_split(r, method="user_last_k", k=1, seed=0)
    assert 999 not in set(s.frame["item"])
    assert s.summary["cold_dropped"]["test"] >= 1


def test_last_k_takes_newest(tiny_ratings):
    s = make_split(tiny_ratings, method="user_last_k", k=2, seed=0)
    for u, g in tiny_ratings.groupby("user"):
        newest = set(g.sort_values("timestamp").item.iloc[-2:])
        assert set(s.part("test").query("user == @u").item) <= newest


def test_temporal_is_a_global_time_cut(tiny_ratings):
    s = make_split(tiny_ratings, method="temporal", seed=0)
    assert len(s.part("test")) > 0 and len(s.part("valid")) > 0
    assert s.part("train").timestamp.max() <= s.part("valid").timestamp.min()
    assert s.part("valid").timestamp.max() <= s.part("test").timestamp.min()


def test_bad_ratios_are_refused(tiny_ratings):
    with pytest.raises(PakdError):
        make_split(tiny_ratings, ratios=(0.5, 0.1, 0.1))
