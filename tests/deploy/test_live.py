"""Live updates in the service (issue 35): a rating is in effect for the next /recommend
and durable in the update log before it is answered; writes need the token; a restart
replays the log (a torn last record cut off, a damaged one or another model's log
refused); a reload between two requests serves both; /metrics parses; `pakd update` folds
files or a service's log into an ordinary saved student. A tiny saved tower student (no
run: its catalogue carries the item fields' vocabularies) keeps these fast; one slow test
serves the shared run's own student."""
import json
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from pakd.cli import main  # noqa: E402
from pakd.deploy.deployable import load_deployable  # noqa: E402
from pakd.deploy.service import create_app, open_updater, write_token  # noqa: E402
from pakd.deploy.updatelog import LOG_NAME  # noqa: E402
from pakd.errors import PakdError  # noqa: E402
from pakd.models import save  # noqa: E402
from pakd.rundir import RunDir  # noqa: E402

from model_zoo import tower  # noqa: E402

NEW_FILM = {"item": 900, "title": "Brand New Film", "features": {"genres": "Comedy|Horror",
                                                                "year": 2001}}


@pytest.fixture
def saved(tmp_path, tiny_enc):
    """A random tower student saved with its catalogue (IDs, titles, vocabularies): the
    tiny data's 20 users (1..20) and 30 items (100..129)."""
    stem = tmp_path / "student"
    save(tower(tiny_enc, user_fields=False), stem)
    RunDir.catalog_of(stem).write_text(json.dumps({
        "user_ids": tiny_enc.user_ids.tolist(), "item_ids": tiny_enc.item_ids.tolist(),
        "titles": tiny_enc.titles, "fields": tiny_enc.vocab}))
    return stem


def service(model, state):
    updater = open_updater(model, state, k=20)
    token, _ = write_token(state)
    client = TestClient(create_app(None, updater=updater, write_token=token))
    auth = {"authorization": f"Bearer {(state / 'token').read_text().strip()}"}
    return client, updater, auth


def top_by_hand(dep, ratings: dict, k: int):
    """The top-k of a new user whose only ratings are ``ratings`` (item index -> rating),
    from the model's own fold-in (`TowerStudent.with_ratings`), rated items excluded."""
    m = dep.model
    u = m.schema.n_users
    items = torch.tensor(list(ratings))
    grown = m.with_ratings(torch.full((len(items),), u), items,
                           torch.tensor(list(ratings.values()), dtype=torch.float32),
                           n_users=u + 1)
    with torch.no_grad():
        s = grown.score_all(torch.tensor([u]))[0]
    s[items] = -torch.inf
    return torch.topk(s, k).indices.tolist()


def test_a_rating_is_in_effect_at_once_and_writes_need_the_token(saved, tmp_path):
    client, updater, auth = service(saved, tmp_path / "state")
    dep = load_deployable(saved)
    body = {"ratings": [{"item": 103, "rating": 5}, {"item": 107, "rating": 1},
                        {"item": 103, "rating": 4.5}]}                # a pair again: latest wins
    r = client.post("/users/newcomer/ratings", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.post("/admin/reload").status_code == 401
    assert client.get("/recommend", params={"user": "newcomer"}).status_code == 404
    r = client.post("/users/newcomer/ratings", json=body, headers=auth)
    assert r.status_code == 200 and r.json()["new_user"] is True and r.json()["seq"] == 1
    rec = client.get("/recommend", params={"user": "newcomer", "k": 8}).json()["items"]
    want = top_by_hand(dep, {dep.item_index(103): 4.5, dep.item_index(107): 1.0}, 8)
    assert [x["item"] for x in rec] == [dep.item_ids[i] for i in want]
    assert not {103, 107} & {x["item"] for x in rec}
    mine = client.get("/users/newcomer/ratings").json()
    assert mine["total"] == 2 and mine["ratings"][0] == {"item": 103, "title": dep.titles[3],
                                                         "rating": 4.5}
    # a known user's new rating: the item leaves their recommendations
    before = client.get("/recommend", params={"user": 5, "k": 3}).json()["items"]
    first = before[0]["item"]
    assert client.post("/users/5/ratings", json={"ratings": [{"item": first, "rating": 2}]},
                       headers=auth).json()["new_user"] is False
    after = client.get("/recommend", params={"user": 5, "k": 3}).json()["items"]
    assert first not in {x["item"] for x in after}
    # bad input: refused, nothing logged
    n = len(updater.log.records)
    for bad, status in (({"ratings": [{"item": 99999, "rating": 3}]}, 404),
                        ({"ratings": [{"item": 103, "rating": 9}]}, 422),
                        ({"ratings": [{"item": 103, "rating": "x"}]}, 422),
                        ({"ratings": []}, 422), ({"rating": 3}, 422)):
        r = client.post("/users/5/ratings", json=bad, headers=auth)
        assert r.status_code == status, (bad, r.text)
    assert "outside the model's scale 1-5" in client.post(
        "/users/5/ratings", json={"ratings": [{"item": 103, "rating": 9}]},
        headers=auth).json()["error"]["message"]
    big = {"ratings": [{"item": 103, "rating": 3}] * 100_000}
    assert client.post("/users/5/ratings", json=big, headers=auth).status_code == 413
    assert len(updater.log.records) == n
    updater.close()


def test_a_new_item_is_placed_by_its_side_fields_then_rated(saved, tmp_path):
    client, updater, auth = service(saved, tmp_path / "state")
    r = client.post("/items", json=NEW_FILM, headers=auth)
    assert r.status_code == 200, r.text
    assert set(r.json()["tokens"]) == {"genres", "year"}
    assert client.post("/items", json=NEW_FILM, headers=auth).status_code == 409
    assert client.post("/items", json={"item": 901, "features": {"colour": "red"}},
                       headers=auth).status_code == 422
    assert client.get("/items", params={"q": "brand new"}).json()["items"] == [
        {"item": 900, "title": "Brand New Film"}]
    full = client.get("/recommend", params={"user": 1, "k": 20}).json()["items"]
    assert all(np.isfinite(x["score"]) for x in full)
    assert client.post("/users/1/ratings", json={"ratings": [{"item": 900, "rating": 5}]},
                       headers=auth).status_code == 200
    assert 900 not in {x["item"] for x in client.get(
        "/recommend", params={"user": 1, "k": 20}).json()["items"]}
    updater.close()


def test_a_restart_replays_the_log_and_cuts_a_torn_record(saved, tmp_path, caplog):
    state = tmp_path / "state"
    client, updater, auth = service(saved, state)
    client.post("/items", json=NEW_FILM, headers=auth)
    for user, item in (("a", 103), ("b", 900), ("a", 112)):
        assert client.post(f"/users/{user}/ratings", json={"ratings": [
            {"item": item, "rating": 4}]}, headers=auth).status_code == 200
    want = client.get("/recommend", params={"user": "a", "k": 10}).json()
    updater.close()
    with open(state / LOG_NAME, "ab") as fh:        # a crash in the middle of a record
        fh.write(b'1234abcd {"type":"ratings","user":"c","rat')
    client, updater, auth = service(saved, state)
    assert len(updater.log.records) == 4 and updater.state.user_index("c") is None
    assert client.get("/recommend", params={"user": "a", "k": 10}).json() == want
    assert "cut short" in caplog.text
    assert (state / LOG_NAME).read_bytes().endswith(b"\n")
    r = client.post("/users/c/ratings", json={"ratings": [{"item": 105, "rating": 2}]},
                    headers=auth)
    assert r.json()["seq"] == 5
    updater.close()
    # damage before the last record is refused, naming the line
    lines = (state / LOG_NAME).read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"a"', b'"z"')
    (state / LOG_NAME).write_bytes(b"".join(lines))
    with pytest.raises(PakdError, match=r"line 3: a damaged record"):
        open_updater(saved, state)
    # a log written for another model (other users and items) is refused, named
    other = tmp_path / "other"
    updater = open_updater(saved, other)
    updater.close()
    lines = (other / LOG_NAME).read_bytes()
    head = json.loads(lines[9:-1])
    head["lineage"] = "0123456789abcdef"
    text = json.dumps(head, separators=(",", ":")).encode()
    (other / LOG_NAME).write_bytes(b"%08x %s\n" % (zlib.crc32(text), text))
    with pytest.raises(PakdError, match="written for another model"):
        open_updater(saved, other)


def test_a_reload_between_two_requests_serves_both(saved, tmp_path):
    client, updater, auth = service(saved, tmp_path / "state")
    client.post("/users/n1/ratings", json={"ratings": [{"item": 103, "rating": 5}]},
                headers=auth)
    first = client.get("/recommend", params={"user": "n1"})
    r = client.post("/admin/reload", headers=auth)
    assert r.status_code == 200 and r.json()["generation"] == 2 and r.json()["replayed"] == 1
    second = client.get("/recommend", params={"user": "n1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()              # same model, the log re-applied
    meta = client.get("/metadata").json()["student"]
    assert meta["generation"] == 2 and meta["update_log_records"] == 1
    updater.close()


def test_metrics_parse_with_the_prometheus_parser(saved, tmp_path):
    client, updater, auth = service(saved, tmp_path / "state")
    for _ in range(3):
        client.get("/recommend", params={"user": 1})
    client.get("/recommend", params={"user": "nobody"})
    client.post("/users/n1/ratings", json={"ratings": [{"item": 103, "rating": 5},
                                                      {"item": 104, "rating": 3}]}, headers=auth)
    fam = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in fam.values() for s in f.samples}
    assert value[("pakd_requests_total", (("endpoint", "/recommend"), ("method", "GET"),
                                          ("status", "200")))] == 3
    assert value[("pakd_errors_total", (("code", "not_found"), ("endpoint", "/recommend")))] == 1
    assert value[("pakd_update_ratings_total", ())] == 2
    assert value[("pakd_update_log_records", ())] == 1
    assert value[("pakd_users", ())] == 21
    assert value[("pakd_request_seconds_count", (("endpoint", "/recommend"),))] == 4
    info = [s for s in fam["pakd_model_info"].samples][0]
    assert info.labels["name"] == "student" and len(info.labels["version"]) == 12
    updater.close()


def test_pakd_update_folds_files_and_a_log_into_a_saved_student(saved, tmp_path, capsys):
    (tmp_path / "items.csv").write_text("item,title,genres,year\n900,Brand New Film,"
                                        "Comedy|Horror,2001\n")
    (tmp_path / "r.csv").write_text("user,item,rating,timestamp\nnew,103,5,20\nnew,900,4,10\n"
                                    "new,103,2,5\n7,112,1,30\n")    # (new, 103): 5 is later
    out = tmp_path / "grown"
    assert main(["update", "--model", str(saved), "--ratings",
                 str(tmp_path / "r.csv"), "--items", str(tmp_path / "items.csv"),
                 "--out", str(out), "-q"]) == 0
    said = capsys.readouterr().out
    assert "21 users (+1), 31 items (+1), 3 ratings added" in said
    grown = load_deployable(out)
    base = load_deployable(saved)
    assert grown.user_ids == base.user_ids + ["new"] and grown.item_ids == base.item_ids + [900]
    u = grown.user_index("new")
    assert set(grown.item_ids[i] for i in grown.seen(u)) == {103, 900}
    # the saved student answers as the live service does after the same updates
    client, updater, auth = service(saved, tmp_path / "state")
    client.post("/items", json=NEW_FILM, headers=auth)
    client.post("/users/new/ratings", json={"ratings": [{"item": 900, "rating": 4},
                                                        {"item": 103, "rating": 5}]},
                headers=auth)
    client.post("/users/7/ratings", json={"ratings": [{"item": 112, "rating": 1}]},
                headers=auth)
    live = client.get("/recommend", params={"user": "new", "k": 10}).json()["items"]
    grown_up = open_updater(out, tmp_path / "s2", k=20)
    other = TestClient(create_app(None, updater=grown_up,
                                  write_token=write_token(tmp_path / "s2")[0]))
    again = other.get("/recommend", params={"user": "new", "k": 10}).json()["items"]
    assert [x["item"] for x in again] == [x["item"] for x in live]
    assert np.allclose([x["score"] for x in again], [x["score"] for x in live], atol=1e-5)
    updater.close()
    grown_up.close()
    # the service's log folded in: serving the result on that log replays nothing twice
    assert main(["update", "--model", str(saved), "--log",
                 str(tmp_path / "state"), "--out", str(tmp_path / "from_log"), "-q"]) == 0
    up = open_updater(tmp_path / "from_log", tmp_path / "state", k=20)
    assert len(up.state.user_ids) == len(base.user_ids) + 1 and up.state.records == 0
    up.close()
    # bad input names the file and line, and writes nothing
    (tmp_path / "bad.csv").write_text("user,item,rating\nnew,103,5\nnew,77777,4\n")
    assert main(["update", "--model", str(saved), "--ratings",
                 str(tmp_path / "bad.csv"), "--out", str(tmp_path / "never")]) != 0
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 3" in err and "77777" in err and "--items" in err
    assert not list(tmp_path.glob("never*"))


def test_a_run_student_takes_updates(pipeline_run, tmp_path):
    """The run's best student (a lightweight one): item fields rebuilt from the run,
    seen items from its split; a new item, then a new user's ratings, in effect at once."""
    client, updater, auth = service(pipeline_run, tmp_path / "state")
    assert updater.state.kind == "lightweight_model"
    assert client.post("/items", json=NEW_FILM, headers=auth).status_code == 200
    r = client.post("/users/someone/ratings", json={"ratings": [
        {"item": 3, "rating": 5}, {"item": 900, "rating": 4}]}, headers=auth)
    assert r.status_code == 200 and r.json()["new_user"] is True
    top = client.get("/recommend", params={"user": "someone", "k": 10}).json()["items"]
    assert len(top) == 10 and not {3, 900} & {x["item"] for x in top}
    seen = {updater.state.item_ids[i] for i in updater.state.seen(updater.state.user_index(5))}
    assert seen and not seen & {x["item"] for x in client.get(
        "/recommend", params={"user": 5, "k": 20}).json()["items"]}
    updater.close()


def _rating(user, item, r=4.0):
    return {"type": "ratings", "user": user, "ratings": [[item, r]]}


def test_concurrent_updates_share_fsyncs_and_each_is_logged_and_in_effect(saved, tmp_path):
    """Group commit: twenty requests at once - the first commits itself, the rest are
    batched behind it - each answered once its record is on disk and in effect, in one
    order on disk and in seq."""
    import asyncio
    updater = open_updater(saved, tmp_path / "state", k=20)
    appends = []
    append = updater.log.append
    updater.log.append = lambda recs: (appends.append(len(recs)), append(recs))[1]

    async def go():
        return await asyncio.gather(*(updater.submit(_rating(f"g{n}", 100 + n % 30))
                                      for n in range(20)))
    done = asyncio.run(go())
    assert [d["seq"] for d in done] == list(range(1, 21))
    assert sum(appends) == 20 and 1 < len(appends) < 20       # batched, not one each
    on_disk = (tmp_path / "state" / LOG_NAME).read_text().splitlines()[1:]
    assert [json.loads(line[9:])["user"] for line in on_disk] == [f"g{n}" for n in range(20)]
    for n in range(20):
        u = updater.state.user_index(f"g{n}")
        assert u is not None and updater.state.item_index(100 + n % 30) in updater.state.seen(u)
    updater.close()


def test_a_failed_write_changes_nothing_and_the_next_update_goes_through(saved, tmp_path):
    import asyncio
    from pakd.deploy.updates import UpdateError
    updater = open_updater(saved, tmp_path / "state", k=20)
    append = updater.log.append

    def full(recs):
        raise OSError(28, "No space left on device")
    updater.log.append = full
    with pytest.raises(UpdateError, match="No space left") as e:
        asyncio.run(updater.submit(_rating("f1", 101)))
    assert e.value.status == 503 and updater.state.user_index("f1") is None
    assert updater.seq == 0 and updater._committer is None
    updater.log.append = append
    assert asyncio.run(updater.submit(_rating("f1", 101)))["seq"] == 1
    assert updater.state.user_index("f1") is not None
    updater.close()


def test_a_cancelled_request_still_finishes_the_batch_it_was_committing(saved, tmp_path):
    """The committing request is cancelled while its fsync runs: its record and the one
    queued behind it are still logged and applied, and the other request is answered."""
    import asyncio
    import threading
    updater = open_updater(saved, tmp_path / "state", k=20)
    append, release = updater.log.append, threading.Event()

    def slow(recs):
        release.wait(5)
        append(recs)
    updater.log.append = slow

    async def go():
        first = asyncio.ensure_future(updater.submit(_rating("c1", 101)))
        await asyncio.sleep(0.05)                  # the first is in its fsync
        second = asyncio.ensure_future(updater.submit(_rating("c2", 102)))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second
    assert asyncio.run(go())["seq"] == 2
    assert [r["user"] for r in updater.log.records] == ["c1", "c2"]
    assert updater.state.user_index("c1") is not None
    assert updater.state.user_index("c2") is not None
    updater.close()
