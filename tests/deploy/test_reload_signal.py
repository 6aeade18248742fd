"""SIGHUP reloads a served student (issue 35): `pakd serve` runs in a subprocess on a tiny
saved tower student; another student is saved in its place and the process gets SIGHUP.
The new student answers from then on, with the update log re-applied onto it, and not one
of the requests sent meanwhile failed. (A subprocess: seconds to start, so `make test`
leaves it to `make test-slow`, tests/conftest.py.)"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from pakd.models import load, save  # noqa: E402
from pakd.rundir import RunDir  # noqa: E402

from model_zoo import tower  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def top(model, user: int | None, k: int, rated: dict) -> list[float]:
    """The top-k scores of ``user`` (None: the new user whose only ratings are ``rated``,
    item index -> rating; those excluded) by the model in this process, once that new
    user's ratings are folded in (they add to their items' popularity for everyone)."""
    u = model.schema.n_users
    items = torch.tensor(list(rated))
    with torch.no_grad():
        grown = model.with_ratings(torch.full((len(items),), u), items,
                                   torch.tensor(list(rated.values())), n_users=u + 1)
        s = grown.score_all(torch.tensor([u if user is None else user]))[0]
    if user is None:
        s[items] = -torch.inf
    return torch.topk(s, k).values.tolist()


def test_sighup_serves_the_new_student_and_no_request_fails(tmp_path, tiny_enc):
    stem, state = tmp_path / "student", tmp_path / "state"
    save(tower(tiny_enc, seed=1, user_fields=False), tmp_path / "other")   # same users, items
    second, _ = load(tmp_path / "other")             # as the service reads it (float32)
    save(tower(tiny_enc, seed=0, user_fields=False), stem)
    first, _ = load(stem)
    RunDir.catalog_of(stem).write_text(json.dumps({
        "user_ids": tiny_enc.user_ids.tolist(), "item_ids": tiny_enc.item_ids.tolist(),
        "titles": tiny_enc.titles, "fields": tiny_enc.vocab}))
    ids = tiny_enc.item_ids.tolist()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pakd.cli", "serve", "--model", str(stem), "--state",
         str(state), "--port", str(port), "--rate-limit", "0", "--threads", "1", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "pakd serve did not answer /healthz"
            time.sleep(0.1)
        auth = {"authorization": f"Bearer {(state / 'token').read_text().strip()}"}
        r = httpx.post(f"{url}/users/n1/ratings", headers=auth,
                       json={"ratings": [{"item": ids[3], "rating": 5}]})
        assert r.status_code == 200

        def served(user):
            r = httpx.get(f"{url}/recommend", params={"user": user, "k": 5})
            assert r.status_code == 200
            return [x["score"] for x in r.json()["items"]]

        def same(a, b):
            return len(a) == len(b) and all(abs(x - y) < 1e-4 for x, y in zip(a, b))
        assert same(served(3), top(first, 2, 5, {3: 5.0}))                    # user ID 3 is index 2
        assert same(served("n1"), top(first, None, 5, {3: 5.0}))

        codes, stop = [], threading.Event()

        def reader():                                # requests all through the reload
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    codes.append(c.get(f"{url}/recommend", params={"user": 3, "k": 5})
                                 .status_code)
        t = threading.Thread(target=reader)
        t.start()
        try:
            while len(codes) < 3:
                time.sleep(0.01)
            for suffix in (".safetensors", ".json"):  # each file replaced atomically
                os.replace((tmp_path / "other").with_suffix(suffix), stem.with_suffix(suffix))
            proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 60
            while httpx.get(f"{url}/metadata").json()["student"]["generation"] < 2:
                assert time.time() < deadline, "SIGHUP did not reload the student"
                time.sleep(0.05)
            seen = len(codes)
            while len(codes) < seen + 3:             # a few answered by the new student
                time.sleep(0.01)
        finally:
            stop.set()
            t.join()
        assert codes and set(codes) == {200}, codes
        new, old = top(second, 2, 5, {3: 5.0}), top(first, 2, 5, {3: 5.0})
        assert same(served(3), new) and not same(new, old)
        assert same(served("n1"), top(second, None, 5, {3: 5.0}))    # the log re-applied
        meta = httpx.get(f"{url}/metadata").json()["student"]
        assert meta["update_log_records"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
