"""Download path: a tiny ml-100k zip served from a loopback HTTP server, MD5-checked."""
from __future__ import annotations

import functools
import http.server
import threading

import pytest
from fixtures_ml import ML100K_RATINGS, md5, ml100k_zip_bytes, tree_digest

from pakd.data import load_movielens
from pakd.data import movielens as ml
from pakd.errors import DataError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A loopback server for a folder holding ml-100k.zip, its .md5, and a corrupt copy."""
    root = tmp_path_factory.mktemp("mirror")
    data = ml100k_zip_bytes()
    (root / "ml-100k.zip").write_bytes(data)
    (root / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {md5(data)}\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / "ml-100k.zip").write_bytes(data[:-10] + b"0123456789")
    (bad / "ml-100k.zip.md5").write_text(md5(data) + "\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "md5": md5(data),
               "root": root}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _release(md5_value):
    return ml.Release("ml-100k", "ml-100k", "100k", ("u.data", "u.item", "u.user"), (1, 5),
                      md5_value)


def _leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name != "ml-100k")


def test_download_verify_extract_then_load(tmp_path, mirror, monkeypatch):
    monkeypatch.setitem(ml.RELEASES, "ml-100k", _release(mirror["md5"]))
    cache = tmp_path / "cache"
    folder = ml.download_release(ml.RELEASES["ml-100k"], cache, base_url=mirror["url"],
                                 quiet=True, allow_insecure=True)
    assert folder == cache / "ml-100k"
    assert {"u.data", "u.item", "u.user", "README"} <= {p.name for p in folder.iterdir()}
    # the verified zip is kept; no .part file or unzip folder is left behind
    assert _leftovers(cache) == ["ml-100k.zip"]
    assert md5((cache / "ml-100k.zip").read_bytes()) == mirror["md5"]

    ds = load_movielens("ml-100k", cache_dir=cache, download=False)
    assert ds.info()["ratings"] == len(ML100K_RATINGS)
    assert ds.source["folder"] == str(folder)


def test_locate_downloads_when_missing(tmp_path, mirror, monkeypatch):
    monkeypatch.setitem(ml.RELEASES, "ml-100k", _release(mirror["md5"]))
    cache = tmp_path / "cache"
    ds = load_movielens("ml-100k", cache_dir=cache, download=True, base_url=mirror["url"],
                        quiet=True, allow_insecure=True)
    assert ds.n_ratings == len(ML100K_RATINGS)
    before = tree_digest(cache)
    # second time: found in the cache, nothing is fetched (an unreachable mirror is fine)
    again = load_movielens("ml-100k", cache_dir=cache, download=True,
                           base_url="http://127.0.0.1:9", quiet=True, allow_insecure=True)
    assert again.n_ratings == ds.n_ratings
    assert tree_digest(cache) == before


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, mirror):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as ei:
        ml.download_release(_release(mirror["md5"]), cache, base_url=mirror["url"] + "/bad",
                            quiet=True, allow_insecure=True)
    msg = str(ei.value)
    assert "checksum mismatch" in msg and mirror["md5"] in msg and "Fix:" in msg
    assert list(cache.iterdir()) == []          # no zip, no .part, no half-extracted folder


def test_a_release_without_a_checksum_of_record_is_refused_unless_asked(tmp_path, mirror):
    """Issue 34: the .md5 beside the zip came from the same mirror and proved nothing; a
    release pakd has no checksum for is refused before any connection, and with
    allow_unverified it is used unchecked (the sidecar is never read)."""
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as ei:
        ml.download_release(_release(None), cache, base_url=mirror["url"], quiet=True,
                            allow_insecure=True)
    assert "no checksum of record" in str(ei.value) and "--allow-unverified" in str(ei.value)
    assert not cache.exists()
    folder = ml.download_release(_release(None), cache, base_url=mirror["url"],
                                 quiet=True, allow_insecure=True, allow_unverified=True)
    assert (folder / "u.data").is_file()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "file:///etc", "ftp://x"])
def test_only_https_unless_insecure_is_allowed(tmp_path, url):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="https") as ei:
        ml.download_release(_release("0e33842e24a9c977be4e0107933c0723"), cache, base_url=url,
                            quiet=True)
    if url.startswith("http:"):
        assert "--allow-insecure" in str(ei.value)
    assert not cache.exists()


def _zip(members: dict) -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_is_refused_before_extraction(tmp_path, monkeypatch):
    """Issue 34: a 409 KB zip unpacked to 400 MB. A member past the inflation cap is
    refused from the archive's index, before a byte is written (small version: the cap
    lowered to 1 MB, a 4 MB member of zeros)."""
    from pakd import limits
    from pakd.errors import LimitError
    monkeypatch.setattr(limits, "INFLATE_FLOOR", 1 << 20)
    data = _zip({"ml-100k/u.data": b"\0" * (4 << 20)})
    assert len(data) < 10_000
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k.zip").write_bytes(data)
    with pytest.raises(LimitError, match="decompression bomb"):
        ml.download_release(_release(md5(data)), cache, base_url="https://127.0.0.1:9",
                            quiet=True)
    assert _leftovers(cache) == ["ml-100k.zip"] and not (cache / "ml-100k").exists()


def test_zip_over_the_total_extraction_cap_is_refused(tmp_path, monkeypatch):
    from pakd.errors import LimitError
    monkeypatch.setattr(ml, "MAX_EXTRACT_BYTES", 1000)
    data = _zip({"ml-100k/u.data": b"1\t1\t5\t1\n" * 200})
    with pytest.raises(LimitError, match="unpacks to"):
        ml.extract_zip(_write(tmp_path / "a.zip", data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _write(path, data):
    path.write_bytes(data)
    return path


def test_cached_zip_with_the_right_md5_is_not_fetched_again(tmp_path, mirror):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k.zip").write_bytes((mirror["root"] / "ml-100k.zip").read_bytes())
    folder = ml.download_release(_release(mirror["md5"]), cache, base_url="http://127.0.0.1:9",
                                 quiet=True, allow_insecure=True)
    assert (folder / "u.item").is_file()


@pytest.mark.parametrize("md5_value", ["0e33842e24a9c977be4e0107933c0723", None])
def test_unreachable_mirror_says_which_files_go_where(tmp_path, md5_value):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as ei:
        ml.download_release(_release(md5_value), cache, base_url="http://127.0.0.1:9",
                            quiet=True, allow_insecure=True, allow_unverified=True)
    msg = str(ei.value)
    assert "could not download http://127.0.0.1:9/ml-100k.zip" in msg
    assert f"{cache / 'ml-100k'}/u.data exists" in msg
    assert "--data-dir DIR with u.data, u.item, u.user in DIR" in msg
    assert list(cache.iterdir()) == []


def test_not_in_cache_without_download(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as ei:
        load_movielens("ml-1m", cache_dir=cache, download=False)
    msg = str(ei.value)
    assert "ml-1m is not in the cache" in msg
    assert f"{cache / 'ml-1m'}/ratings.dat exists" in msg and "--download" in msg
    assert not cache.exists()


def test_archive_without_the_release_folder(tmp_path, mirror):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("elsewhere/u.data", "1\t1\t5\t1\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k.zip").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="the archive has no ml-100k/u.data"):
        ml.download_release(_release(md5(buf.getvalue())), cache, base_url=mirror["url"],
                            quiet=True, allow_insecure=True)
    assert _leftovers(cache) == ["ml-100k.zip"] and not (cache / "ml-100k").exists()


def test_archive_member_escaping_to_a_sibling_folder_is_refused(tmp_path, monkeypatch):
    """Issue 15: member paths were checked with a plain text-prefix match, so
    "../<tmp>.unzipX/..." (a sibling whose name starts like the unzip folder) passed."""
    import io
    import zipfile
    cache = tmp_path / "cache"
    cache.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t1\n")
        zf.writestr("../x.unzipevil/planted.txt", "escaped")
    data = buf.getvalue()
    (cache / "ml-100k.zip").write_bytes(data)
    fixed = cache / "x.unzip"
    monkeypatch.setattr(ml.tempfile, "mkdtemp", lambda **kw: (fixed.mkdir(), str(fixed))[1])
    with pytest.raises(DataError, match="unsafe path"):
        ml.download_release(_release(md5(data)), cache, base_url="http://127.0.0.1:9",
                            quiet=True, allow_insecure=True)
    assert not (cache / "x.unzipevil").exists()
