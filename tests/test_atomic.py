"""Atomic writes: readers see the old file or the new one, never half of one."""
import pytest

from pakd.atomic import atomic_write_bytes, atomic_write_text


def test_replaces_whole_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [q.name for q in p.parent.iterdir()] == ["f.txt"]
    assert p.stat().st_mode & 0o644 == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")
    import os
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def _raise(code):
    import errno
    import os

    def boom(*a, **k):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
    return boom


@pytest.mark.parametrize("code,words", [("ENOSPC", "no space is left"),
                                        ("EROFS", "read-only"), ("EACCES", "permission")])
def test_out_of_space_or_read_only_is_named_with_the_path(tmp_path, monkeypatch, code, words):
    """Issue 15, item 7: a clear error naming the path; no half-written artefact left."""
    import os

    from pakd.errors import PakdError
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")
    monkeypatch.setattr(os, "replace", _raise(code))
    with pytest.raises(PakdError) as ei:
        atomic_write_bytes(p, b"new")
    assert str(p) in str(ei.value) and words in str(ei.value) and "--run" in str(ei.value)
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_a_command_out_of_space_stops_cleanly(tmp_path, monkeypatch, capsys):
    import os

    from pakd.cli import main
    monkeypatch.setattr(os, "replace", _raise("ENOSPC"))
    run = tmp_path / "run"
    assert main(["data", "split", "--run", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no space is left" in err and str(run) in err and "Traceback" not in err
    left = [p.name for p in run.rglob("*") if p.is_file()]
    assert not [n for n in left if n.endswith(".tmp")] and ".lock" not in left
