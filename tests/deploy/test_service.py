"""The HTTP service: every endpoint answers, bad requests get 404/413/422 and never 500,
and a real uvicorn server starts on an ephemeral port and stops cleanly."""
import json
import socket
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from pakd.deploy.service import create_app, load_served  # noqa: E402
from pakd.errors import PakdError  # noqa: E402


@pytest.fixture(scope="module")
def served(pipeline_run):
    student = load_served(pipeline_run, k=20)
    teacher = load_served(pipeline_run / "teachers" / "ensemble", k=20, label="teacher")
    return student, teacher


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(*served, max_batch=50))


def test_recommend_gives_the_models_best_unseen_titles(client, served):
    student = served[0].dep
    r = client.get("/recommend", params={"user": 5, "k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == 5 and len(body["items"]) == 7
    u = student.user_index(5)
    full = student.model.score_all(torch.tensor([u]))[0].detach()
    full[torch.from_numpy(student.seen(u))] = -torch.inf
    want = torch.topk(full, 7).indices.tolist()
    assert [x["item"] for x in body["items"]] == [student.item_ids[i] for i in want]
    assert [x["title"] for x in body["items"]] == [student.titles[i] for i in want]
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    seen_ids = {student.item_ids[i] for i in student.seen(u)}
    assert not seen_ids & {x["item"] for x in body["items"]}
    with_seen = client.get("/recommend", params={"user": 5, "k": 20, "include_seen": True})
    assert seen_ids & {x["item"] for x in with_seen.json()["items"]}


def test_teacher_and_page(client):
    t = client.get("/recommend", params={"user": 5, "model": "teacher"})
    assert t.status_code == 200 and t.json()["model"] == "teacher" and len(t.json()["items"]) == 10
    page = client.get("/")
    assert page.status_code == 200 and "student-list" in page.text and "teacher-list" in page.text
    meta = client.get("/metadata").json()
    assert meta["student"]["kind"] == "lightweight_model" and meta["teacher"]["kind"] == "ensemble"
    assert meta["student"]["metrics"]["ndcg@10"] > 0 and meta["max_batch"] == 50
    assert client.get("/healthz").json()["status"] == "ok"
    assert len(client.get("/users").json()["users"]) == 40


def test_score_rates_pairs_like_the_model(client, served):
    dep = served[0].dep
    r = client.post("/score", json={"pairs": [[1, 3], ["2", "4"]]})
    assert r.status_code == 200
    u = torch.tensor([dep.user_index(1), dep.user_index(2)])
    i = torch.tensor([dep.item_index(3), dep.item_index(4)])
    want = dep.model.predict(u, i).detach().numpy()
    assert np.allclose(r.json()["ratings"], want, atol=1e-5)
    assert client.post("/score", json={"pairs": []}).json() == {"ratings": []}


@pytest.mark.parametrize("method,url,kw,status,words", [
    ("get", "/recommend", {"params": {"user": 99999}}, 404, "not among"),
    ("get", "/recommend", {"params": {}}, 422, "user"),
    ("get", "/recommend", {"params": {"user": 1, "k": "ten"}}, 422, "k"),
    ("get", "/recommend", {"params": {"user": 1, "k": 0}}, 422, "k"),
    ("get", "/recommend", {"params": {"user": 1, "k": 21}}, 422, "k"),
    ("get", "/recommend", {"params": {"user": 1, "model": "oracle"}}, 422, "model"),
    ("post", "/score", {"json": {"pairs": [[1, 3]] * 51}}, 413, "limit"),
    ("post", "/score", {"content": b"x" * 10_000}, 413, "limit"),
    ("post", "/score", {"content": b"{not json"}, 422, "JSON"),
    ("post", "/score", {"json": {"pairs": [[1, 2, 3]]}}, 422, "pairs"),
    ("post", "/score", {"json": {"pairs": [[1, None]]}}, 422, "pairs"),
    ("post", "/score", {"json": {"pairs": [[True, 1]]}}, 422, "pairs"),
    ("post", "/score", {"json": [1, 2]}, 422, "pairs"),
    ("post", "/score", {"json": {"pairs": [[1, 3], [1, 999]]}}, 404, "pair 1: item 999"),
    ("post", "/score", {"json": {"pairs": [[777, 3]]}}, 404, "user 777"),
])
def test_bad_requests_get_clear_4xx(client, method, url, kw, status, words):
    r = getattr(client, method)(url, **kw)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_odd_input_never_answers_500(client):
    for user in ["", " ", "%00", "1" * 300, "-1", "1.0", "😀", "../etc/passwd", "1e9"]:
        assert client.get("/recommend", params={"user": user}).status_code in (404, 422)
    for body in [b"", b"null", b"[]", b'{"pairs": null}', b'{"pairs": "1,2"}',
                 b'{"pairs": [[1e400, 2]]}', b'{"pairs": [{"u": 1}]}', b"\xff\xfe"]:
        assert client.post("/score", content=body).status_code in (404, 413, 422)
    assert client.get("/nowhere").status_code == 404
    assert client.put("/score").status_code == 405


def test_fallback_answers_unknown_users_with_popular_items(served):
    c = TestClient(create_app(served[0], fallback="popular"))
    r = c.get("/recommend", params={"user": "stranger", "k": 3})
    assert r.status_code == 200 and r.json()["fallback"] == "popular"
    dep = served[0].dep
    assert [x["item"] for x in r.json()["items"]] == [dep.item_ids[i] for i in dep.popular[:3]]
    assert c.get("/recommend", params={"user": 1, "model": "teacher"}).status_code == 404


def test_bad_service_settings(served, pipeline_run):
    with pytest.raises(PakdError, match="fallback"):
        create_app(served[0], fallback="random")
    with pytest.raises(PakdError, match="--onnx"):
        load_served(pipeline_run, int8=True)


def test_onnx_backend_answers_like_pytorch(pipeline_run, served, tmp_path):
    onnx = load_served(pipeline_run, onnx="auto", k=20)   # exported now, beside the model
    assert onnx.graphs.backend == "onnxruntime"
    assert (pipeline_run / "models/saved/best_student_model_onnx/metadata.json").is_file()
    a = TestClient(create_app(onnx)).get("/recommend", params={"user": 9}).json()["items"]
    b = TestClient(create_app(served[0])).get("/recommend", params={"user": 9}).json()["items"]
    assert [x["item"] for x in a] == [x["item"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)


def test_real_server_starts_answers_and_stops(served):
    import uvicorn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served[0]), host="127.0.0.1", port=port,
                                           log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.get(f"{base}/recommend", params={"user": 3, "k": 5})
        assert r.status_code == 200 and len(r.json()["items"]) == 5
        assert httpx.post(f"{base}/score", content=json.dumps({"pairs": [[3, 1]]})).status_code == 200
    finally:
        server.should_exit = True
        th.join(10)
    assert not th.is_alive()
