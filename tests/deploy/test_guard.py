"""The request gate's parts: the rate limiter's arithmetic, the nesting check (linear, even
on bodies built to make a scanner backtrack), Host parsing, the one error body."""
import json
import time

import pytest

pytest.importorskip("fastapi")

from pakd.deploy.guard import RateLimiter, _host_name, error_body, json_depth_ok  # noqa: E402


def test_token_bucket_allows_bursts_then_the_rate():
    rl = RateLimiter(rate=2, burst=4)
    assert [rl.take("a", now=0.0) for _ in range(4)] == [0, 0, 0, 0]
    wait = rl.take("a", now=0.0)
    assert wait == pytest.approx(0.5)                    # one token at 2 a second
    assert rl.take("b", now=0.0) == 0                    # another client is not held up
    assert rl.take("a", now=0.5) == 0 and rl.take("a", now=0.5) > 0


def test_the_client_table_forgets_idle_clients():
    rl = RateLimiter(rate=10, burst=20, max_clients=100)
    for i in range(500):
        rl.take(f"10.0.{i // 256}.{i % 256}", now=i * 10.0)   # each idle long before the next
    assert len(rl.buckets) <= 101


@pytest.mark.parametrize("body,ok", [
    (b'{"pairs": [[1, 2], [3, 4]]}', True),
    (b"[" * 32 + b"]" * 32, True),
    (b"[" * 33 + b"]" * 33, False),
    (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', True),   # inside a string
    (b'["\\\\", ' + b"[" * 40 + b"]" * 40 + b"]", False),             # an escaped backslash
    (b'["\\"[' + b"[" * 40, True),                   # an unclosed string runs to the end
])
def test_nesting_depth(body, ok):
    assert json_depth_ok(body) is ok


def test_nesting_check_is_linear_on_hostile_bodies():
    for body in (b'"\\"' * 30000, b'"' * 90000, b"[" * 90000, b"\\" * 90000):
        t = time.perf_counter()
        json_depth_ok(body)
        assert time.perf_counter() - t < 0.2


def test_host_names():
    assert _host_name(b"Recs.Example:8000") == "recs.example"
    assert _host_name(b"[::1]:8000") == "::1" and _host_name(b"::1") == "::1"
    assert _host_name(b"") == ""


def test_error_body_shape():
    body = json.loads(error_body(404, "gone"))
    assert body == {"error": {"code": "not_found", "message": "gone"}}
    assert json.loads(error_body(418, "teapot"))["error"]["code"] == "bad_request"
