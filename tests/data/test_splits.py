import pytest

from pakd.data.splits import make_split, read_split
from pakd.errors import PakdError


@pytest.mark.parametrize("method", ["user_ratio", "global_ratio", "temporal", "user_temporal", "user_last_k",
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


def _tied(n_users=6, per_user=10):
    """Ratings where each user's timestamps come in tied pairs (and user 6 is all one tie)."""
    import pandas as pd
    rows = []
    for u in range(1, n_users + 1):
        for j in range(per_user):
            ts = 5_000 if u == n_users else 1_000 + 100 * (j // 2)
            rows.append((u, 200 + (7 * j + u) % 23, float(1 + j % 5), ts))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def test_user_temporal_holds_out_each_users_newest_ratings(tiny_ratings):
    s = make_split(tiny_ratings, method="user_temporal", seed=0)
    assert s.summary["method"] == "user_temporal" and "item ID" in s.summary["tie_rule"]
    for u, g in s.frame.groupby("user"):
        tr, va, te = (g[g.part == p].timestamp for p in ("train", "valid", "test"))
        # no held-out rating before any of that user's train ratings
        assert te.empty or te.min() >= tr.max()
        assert va.empty or (va.min() >= tr.max() and (te.empty or te.min() >= va.max()))
    # 12 ratings a user: round(1.2) = 1 valid and 1 test before the cold rule, the newest
    full = make_split(tiny_ratings, method="user_temporal", seed=0).frame
    newest = tiny_ratings.sort_values("timestamp").groupby("user").tail(1)
    test = full[full.part == "test"]
    assert set(zip(test.user, test.item)) <= set(zip(newest.user, newest.item))
    assert s.summary["rows"]["test"] + s.summary["cold_dropped"]["test"] == 20


def test_user_temporal_is_deterministic_under_ties():
    r = _tied()
    a = make_split(r, method="user_temporal", seed=0)
    b = make_split(r.sample(frac=1.0, random_state=7), method="user_temporal", seed=5)
    key = ["user", "item"]
    pa = a.frame.sort_values(key).reset_index(drop=True)
    pb = b.frame.sort_values(key).reset_index(drop=True)
    assert pa[key + ["part"]].equals(pb[key + ["part"]])   # same seed-free, order-free split
    # ten ratings a user, one to test and one to valid. Users 1-5: the newest two share a
    # timestamp -> the larger item ID is test, the smaller valid. User 6: one timestamp for
    # all ten -> the largest item ID is test, the next valid. (The cold rule only drops.)
    held = 0
    for u, grp in r.groupby("user"):
        newest = grp[grp.timestamp == grp.timestamp.max()].sort_values("item")
        mine = a.frame[a.frame.user == u]
        for part, want in (("test", newest.item.iloc[-1]), ("valid", newest.item.iloc[-2])):
            got = mine[mine.part == part].item.tolist()
            assert got in ([want], [])
            held += len(got)
    assert held >= 8


def test_user_temporal_single_rating_user_is_train_only(tiny_ratings):
    r = tiny_ratings.copy()
    r.loc[len(r)] = (77, 105, 4.0, 2_000_000)          # user 77: one rating, the newest of all
    s = make_split(r, method="user_temporal", seed=0)
    assert s.frame[s.frame.user == 77].part.tolist() == ["train"]


def test_time_split_without_timestamps_is_refused_with_the_fix(tiny_ratings, tmp_path):
    from pakd.errors import DataError
    r = tiny_ratings.assign(timestamp=0)
    for method in ("temporal", "user_temporal", "user_last_k"):
        with pytest.raises(DataError) as e:
            make_split(r, method=method, source=tmp_path / "ratings.csv")
        msg = str(e.value)
        assert "ratings.csv" in msg and "no timestamps" in msg
        assert "--columns timestamp=" in msg and "--split user_ratio" in msg
    assert len(make_split(r, method="user_ratio").frame) == len(r)   # random splits need none
    assert (r.timestamp == 0).all()                                    # input untouched


@pytest.mark.parametrize("ratios", [(1.0, 0.0, 0.0), (0.9, 0.1, 0.0)])
@pytest.mark.parametrize("method", ["temporal", "user_temporal"])
def test_time_cut_outside_zero_one_is_refused(tiny_ratings, method, ratios):
    with pytest.raises(PakdError, match="strictly between 0 and 1"):
        make_split(tiny_ratings, method=method, ratios=ratios)


def test_train_cut_per_method(tiny_ratings):
    assert make_split(tiny_ratings, method="user_ratio").train_cut() is None
    g = make_split(tiny_ratings, method="temporal")
    assert g.train_cut() == g.part("train").timestamp.max()
    u = make_split(tiny_ratings, method="user_temporal")
    cut = u.train_cut()
    assert cut[3] == u.part("train").query("user == 3").timestamp.max()
    assert len(cut) == 20
