import pandas as pd
import pytest


@pytest.fixture
def tiny_ratings():
    """20 users x 30 items, deterministic, with timestamps."""
    import numpy as np
    rng = np.random.default_rng(1)
    rows = []
    for u in range(20):
        items = rng.choice(30, size=12, replace=False)
        for j, i in enumerate(items):
            rows.append((u + 1, int(i) + 100, float(rng.integers(1, 6)), 1_000_000 + 1000 * j + u))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


@pytest.fixture
def tiny_dataset(tiny_ratings):
    """tiny_ratings with user (gender, age) and item (genres, year, tags) side tables."""
    import numpy as np

    from pakd.data.dataset import Dataset
    rng = np.random.default_rng(2)
    users = pd.DataFrame({"gender": rng.choice(["F", "M"], 20),
                          "age": rng.choice(["18-24", "25-34", "56+"], 20)},
                         index=pd.Index(range(1, 21), name="user"))
    genres = ["Action", "Comedy", "Drama", "Horror"]
    items = pd.DataFrame({
        "title": [f"Movie {i} ({1980 + i % 30})" for i in range(100, 130)],
        "genres": [list(rng.choice(genres, rng.integers(0, 3), replace=False)) for _ in range(30)],
        "year": [1980 + i % 30 for i in range(30)],
        "tags": [["funny"] if i % 3 == 0 else [] for i in range(30)],
    }, index=pd.Index(range(100, 130), name="item"))
    return Dataset("tiny", tiny_ratings, (1.0, 5.0), users=users, items=items,
                   user_features={"gender": "categorical", "age": "categorical"},
                   item_features={"genres": "multi", "year": "numeric", "tags": "multi"})


@pytest.fixture
def tiny_enc(tiny_dataset):
    from pakd.data import encode, make_split
    return encode(tiny_dataset, make_split(tiny_dataset.ratings, seed=0), n_buckets=4)


@pytest.fixture
def tiny_files(tmp_path, tiny_dataset):
    """The tiny dataset as a generic ratings CSV plus an item feature CSV."""
    d = tmp_path / "data"
    d.mkdir()
    r = tiny_dataset.ratings.rename(columns={"user": "userId", "item": "movieId"})
    r.to_csv(d / "ratings.csv", index=False)
    it = tiny_dataset.items.copy()
    it["genres"] = it["genres"].map(lambda g: "|".join(g) if g else "")
    it["tags"] = it["tags"].map(lambda g: "|".join(g) if g else "")
    it.reset_index().rename(columns={"item": "movieId"}).to_csv(d / "items.csv", index=False)
    return d


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """`pakd run --profile quick` on 40 users x 60 titled items, every method and the
    ablation: the one trained run the pipeline and deployment tests share."""
    import numpy as np
    from pakd.cli import main
    root = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(4)
    rows = []
    for u in range(40):
        for j, i in enumerate(rng.choice(60, size=18, replace=False)):
            rows.append((u + 1, int(i) + 1, float(rng.integers(1, 6)), 10_000 + 100 * j + u))
    pd.DataFrame(rows, columns=["userId", "movieId", "rating", "ts"]).to_csv(root / "r.csv", index=False)
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
    pd.DataFrame({"movieId": range(1, 61), "title": [f"Film {i}" for i in range(1, 61)],
                  "genres": ["|".join(rng.choice(genres, 2, replace=False)) for _ in range(60)],
                  "year": [1950 + i for i in range(60)]}).to_csv(root / "items.csv", index=False)
    out = root / "run"
    rc = main(["run", "--dataset", str(root / "r.csv"), "--columns",
               "user=userId,item=movieId,rating=rating,timestamp=ts",
               "--item-features", str(root / "items.csv"), "--title-column", "title",
               "--out", str(out), "--profile", "quick", "--threads", "1", "-q",
               "--check-train-sample", "--rerank-n", "5,20", "--ease-lambdas", "10,100",
               "--models", "svd,xdeepfm,autoint,ease",
               "--algorithms", "svd,xdeepfm,autoint,ease",
               # the ratings above are drawn at random: with an offset the rating mix gives
               # every member weight 0 (the offset is the valid mean), and no member's damage
               # would reach the ensemble's objective (tests/recipes/test_seeds.py)
               "--rating-offset", "false",
               "--methods", "fisher_kd,taylor_kd,magnitude_kd,random_kd,fisher_ft,scratch,"
               "final_kd,mf_labels,lightweight_kd,dense_kd", "--ablation", "0.5"])
    assert rc == 0
    return out


# integration tests: they train a whole run (the shared `pipeline_run`, or their own),
# launch torchrun or a service in a subprocess, or export models; `make test` leaves them
# to `make test-slow`
SLOW_FIXTURES = {"pipeline_run"}
SLOW_FILES = {"test_distributed.py", "test_planted.py", "test_export.py",
              "test_reload_signal.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
