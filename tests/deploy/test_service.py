"""The HTTP service: every endpoint answers, bad requests get 404/413/415/422 and never
500, every error has one shape, the service is safe by default (issue 34: depth limit,
token, Host check, rate limit, headers, no paths in /metadata, no /docs unless asked, the
teacher off the event loop), and a real uvicorn server starts on an ephemeral port and
stops cleanly."""
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

from pakd.deploy.auth import BearerToken  # noqa: E402
from pakd.deploy.guard import CODES  # noqa: E402
from pakd.deploy.service import create_app, load_served  # noqa: E402
from pakd.errors import PakdError  # noqa: E402

JSON = {"content-type": "application/json"}


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
    ("post", "/score", {"content": b"x" * 10_000, "headers": JSON}, 413, "limit"),
    ("post", "/score", {"content": b"{not json", "headers": JSON}, 422, "JSON"),
    ("post", "/score", {"content": b'{"pairs": []}'}, 415, "application/json"),
    ("post", "/score", {"content": b'{"pairs": []}', "headers": {"content-type": "text/plain"}},
     415, "text/plain"),
    ("get", "/nowhere", {}, 404, "no such endpoint"),
    ("put", "/score", {}, 405, "PUT is not allowed"),
    ("get", "/docs", {}, 404, "no such endpoint"),
    ("get", "/openapi.json", {}, 404, "no such endpoint"),
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
    assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"code", "message"}
    assert words in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == CODES[status]


def test_odd_input_never_answers_500(client):
    for user in ["", " ", "%00", "1" * 300, "-1", "1.0", "😀", "../etc/passwd", "1e9"]:
        assert client.get("/recommend", params={"user": user}).status_code in (404, 422)
    for body in [b"", b"null", b"[]", b'{"pairs": null}', b'{"pairs": "1,2"}',
                 b'{"pairs": [[1e400, 2]]}', b'{"pairs": [{"u": 1}]}', b"\xff\xfe",
                 b'{"pairs": [["\\ud800", 1]]}', b'"' * 500, b'["\\' * 200]:
        assert client.post("/score", content=body, headers=JSON).status_code in (404, 413, 422)
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
        assert httpx.post(f"{base}/score", content=json.dumps({"pairs": [[3, 1]]}),
                          headers=JSON).status_code == 200
    finally:
        server.should_exit = True
        th.join(10)
    assert not th.is_alive()


# ----------------------------------------------------------------------------- issue 34

def test_deeply_nested_json_answers_422_not_500(served):
    """33,000 brackets under the body limit raised RecursionError (500, a traceback logged
    per request); the depth is checked before parsing."""
    c = TestClient(create_app(served[0]))          # default batch: a 68 KB body limit
    body = b"[" * 33000 + b"]" * 33000
    r = c.post("/score", content=body, headers=JSON)
    assert r.status_code == 422 and "nested deeper" in r.json()["error"]["message"]
    r = c.post("/score", content=b'{"pairs": ' + b"[" * 40 + b"]" * 40 + b"}", headers=JSON)
    assert r.status_code == 422


def test_metadata_has_no_paths_and_no_pid(client, pipeline_run):
    meta = client.get("/metadata").json()
    text = json.dumps(meta)
    assert str(pipeline_run) not in text and "pid" not in meta
    for part in meta["student"], meta["teacher"]:
        assert "path" not in part and "run" not in part
        assert not any(isinstance(v, str) and v.startswith("/") for v in part.values())


def test_security_headers_on_every_answer(client):
    for r in (client.get("/"), client.get("/healthz"), client.get("/nowhere"),
              client.post("/score", content=b"{}")):
        h = r.headers
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "default-src 'none'" in h["content-security-policy"]
    # the page's own inline script and style are allowed by their hashes, nothing else
    csp = client.get("/").headers["content-security-policy"]
    assert "unsafe-inline" not in csp and csp.count("'sha256-") == 2


def test_docs_only_when_asked_and_without_a_cdn(served):
    c = TestClient(create_app(served[0], docs=True))
    page = c.get("/docs")
    assert page.status_code == 200 and "/recommend" in page.text
    assert "cdn" not in page.text.lower() and "<script" not in page.text.lower()
    assert "https://" not in page.text and "http://" not in page.text
    assert "/score" in c.get("/openapi.json").json()["paths"]


def test_bearer_token_guards_everything_but_health_and_page(served):
    token = "s3cret-token-0123456789"
    c = TestClient(create_app(served[0], token=BearerToken(token)))
    r = c.get("/recommend", params={"user": 5})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/metadata", headers={"authorization": "Bearer wrong-token-0123456789"}
                 ).status_code == 401
    assert c.get("/metadata", headers={"authorization": token}).status_code == 401
    ok = {"authorization": f"Bearer {token}"}
    assert c.get("/recommend", params={"user": 5}, headers=ok).status_code == 200
    assert c.post("/score", json={"pairs": [[1, 3]]}, headers=ok).status_code == 200
    assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_host_header_is_checked_when_bound_to_a_name(served):
    c = TestClient(create_app(served[0], allowed_hosts={"recs.example"}))
    assert c.get("/healthz", headers={"host": "recs.example:8000"}).status_code == 200
    r = c.get("/healthz", headers={"host": "evil.example"})
    assert r.status_code == 400 and "Host" in r.json()["error"]["message"]


def test_each_client_is_rate_limited(served):
    c = TestClient(create_app(served[0], rate_limit=1))      # bursts of 2
    codes = [c.get("/users", params={"limit": 1}).status_code for _ in range(14)]
    # two at once, then one a second (a slow machine may earn one more while it asks)
    assert codes[:2] == [200, 200] and codes.count(429) >= 11 and codes[-1] == 429
    r = c.get("/users")
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert c.get("/healthz").status_code == 200               # probes are never limited


def test_the_teacher_computes_off_the_event_loop(served):
    """A slow teacher request no longer holds /healthz (it took ~530 ms behind one)."""
    import asyncio

    student, teacher = served
    app = create_app(student, teacher)
    slow = teacher.graphs.top

    def top(*a, **kw):
        time.sleep(0.4)
        return slow(*a, **kw)

    async def both():
        done = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            async def get(path):
                r = await c.get(path)
                done.append((path, r.status_code))
            await asyncio.gather(get("/recommend?user=5&model=teacher"), get("/healthz"))
        return done

    teacher.graphs.top = top
    try:
        done = asyncio.run(both())
    finally:
        teacher.graphs.top = slow
    assert done == [("/healthz", 200), ("/recommend?user=5&model=teacher", 200)]
