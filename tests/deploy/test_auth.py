"""Bearer tokens, loopback detection and the serve command's exposure checks (issue 34):
a non-loopback --host without a token is refused before anything is loaded or bound."""
import logging
import socket

import pytest

pytest.importorskip("fastapi")

from pakd.cli import main  # noqa: E402
from pakd.deploy.auth import (BearerToken, allowed_hosts, is_loopback,  # noqa: E402
                              read_token_file)
from pakd.errors import PakdError  # noqa: E402

TOKEN = "Zm9vYmFyLWJhei1xdXV4LTEyMzQ1Ng"


def test_bearer_token_compares_the_whole_header():
    t = BearerToken(TOKEN)
    assert t.allows(f"Bearer {TOKEN}") and t.allows(f"bearer   {TOKEN} ")
    assert t.allows(f"Bearer {TOKEN}".encode())
    for bad in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                "Bearer", f"Bearer {TOKEN.upper()}"):
        assert not t.allows(bad), bad
    assert TOKEN not in repr(t)


@pytest.mark.parametrize("token", ["short", "x" * 15, "has space in it....", "tök" * 10])
def test_weak_or_unsendable_tokens_are_refused(token):
    with pytest.raises(PakdError, match="at least 16"):
        BearerToken(token)


def test_token_file(tmp_path, caplog):
    p = tmp_path / "token"
    p.write_text(TOKEN + "\n")
    p.chmod(0o600)
    assert read_token_file(p).allows(f"Bearer {TOKEN}")
    p.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="pakd"):
        read_token_file(p)
    assert "other users" in caplog.text
    p.write_text(f"{TOKEN}\n{TOKEN}\n")
    with pytest.raises(PakdError, match="more than one line"):
        read_token_file(p)
    p.write_bytes(b"x" * 5000)
    with pytest.raises(PakdError, match="limit"):
        read_token_file(p)
    with pytest.raises(PakdError, match="not found"):
        read_token_file(tmp_path / "missing")
    with pytest.raises(PakdError, match="folder"):
        read_token_file(tmp_path)


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.8.0.1", True),
                                       ("localhost", True), ("::1", True), ("[::1]", True),
                                       ("0.0.0.0", False), ("::", False), ("10.0.0.7", False),
                                       ("recs.example", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_allowed_hosts():
    assert allowed_hosts("recs.example") == {"recs.example"}
    assert {"127.0.0.1", "localhost", "::1"} <= allowed_hosts("127.0.0.1")
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("10.0.0.7") is None


def _serve(capsys, *argv):
    rc = main(["serve", "--model", "/nonexistent/model", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_public_host_needs_a_token_or_insecure(capsys, tmp_path):
    rc, out, err = _serve(capsys, "--host", "0.0.0.0")
    assert rc == 2 and out == ""
    assert "--token-file" in err and "--insecure" in err and "Authorization: Bearer" in err
    # with a token (or --insecure) it gets past that check: to the missing model
    p = tmp_path / "token"
    p.write_text(TOKEN)
    p.chmod(0o600)
    rc, out, err = _serve(capsys, "--host", "0.0.0.0", "--port", "0", "--token-file", str(p))
    assert rc == 2 and "no model there" in err and out == ""
    rc, out, err = _serve(capsys, "--host", "0.0.0.0", "--port", "0", "--insecure")
    assert rc == 2 and "no model there" in err
    rc, out, err = _serve(capsys, "--host", "127.0.0.1", "--port", "0", "--token-file",
                          str(tmp_path / "nope"))
    assert rc == 2 and "not found" in err


def test_port_out_of_range_and_port_in_use_are_refused_before_serving(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["serve", "--model", "m", "--port", "99999"])
    assert ei.value.code == 2 and "0 .. 65535" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        rc, out, err = _serve(capsys, "--port", str(s.getsockname()[1]))
    assert rc == 2 and "in use" in err and "--port 0" in err
    assert "serving" not in out                   # nothing claimed before the failure
