"""The Python API mirrors the CLI."""
import pakd


def test_api_load_split_encode(tmp_path, tiny_files):
    ds = pakd.load_dataset(str(tiny_files / "ratings.csv"),
                           columns={"user": "userId", "item": "movieId"},
                           item_features=str(tiny_files / "items.csv"),
                           item_key="movieId", title_column="title")
    assert ds.info()["ratings"] == len(ds.ratings)
    sp = pakd.split(ds, method="user_ratio", seed=1)
    sp.write(tmp_path / "run")
    assert (tmp_path / "run" / "split.csv").is_file()
    enc = pakd.encode(ds, sp)
    assert {"user_id", "item_id", "genres", "year", "tags"} <= set(enc.schema.names)
    assert enc.titles and enc.titles[0].startswith("Movie")
