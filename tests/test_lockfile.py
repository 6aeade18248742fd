"""requirements.lock: every requirement pinned with a hash (so a fresh clone installs it
from the package index alone, hash-checked), and a lock out of date with pyproject.toml
named by `make` (src/pakd/lockfile.py check)."""
import subprocess
import sys
from pathlib import Path

import pytest

from pakd import lockfile

ROOT = Path(__file__).resolve().parents[1]


def test_every_requirement_in_the_lock_is_pinned_with_a_hash():
    pins = lockfile.pins(ROOT / lockfile.LOCK)
    assert len(pins) > 40
    loose = {n: p.get("line") for n, p in pins.items() if p["version"] is None}
    assert not loose, f"not pinned with ==: {loose}"
    unhashed = [n for n, p in pins.items() if not p["hashes"]]
    assert not unhashed, f"no --hash: {unhashed}"
    assert all(h.startswith("sha256:") for p in pins.values() for h in p["hashes"])
    # the torch CPU wheel (PyPI's torch of the same version pulls CUDA), and pip pinned
    # instead of upgraded on every install
    assert pins["torch"]["version"].endswith("+cpu") and len(pins["torch"]["hashes"]) == 1
    assert "pip" in pins and "setuptools" in pins and "pip-tools" in pins
    assert not any(n.startswith("nvidia-") for n in pins)
    # no option line that points pip at another index or a file on one machine
    text = (ROOT / lockfile.LOCK).read_text()
    assert "--index-url" not in text and "--find-links" not in text and "\n-e " not in text


def test_every_dependency_and_extra_of_pyproject_is_locked():
    py = lockfile._toml(ROOT / "pyproject.toml")["project"]
    wanted = list(py["dependencies"])
    for reqs in py["optional-dependencies"].values():
        wanted += reqs
    pins = lockfile.pins(ROOT / lockfile.LOCK)
    import re
    missing = [r for r in wanted
               if lockfile.normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) not in pins]
    assert not missing


def test_the_committed_lock_matches_pyproject():
    assert lockfile.problem(ROOT) is None


def _root(tmp_path, deps='["numpy>=1.24"]', version="0.1.0"):
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\nversion = "{version}"\ndependencies = {deps}\n'
        '[project.optional-dependencies]\ntest = ["pytest>=7"]\n')
    (tmp_path / lockfile.LOCK).write_text(
        "#\n# header\n#\nnumpy==2.4.6 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
        "    # via x\npytest==9.2.0 --hash=sha256:cc\n")
    return tmp_path


def test_a_stale_lock_is_named_with_the_fix(tmp_path):
    root = _root(tmp_path)
    assert "no 'pyproject-deps-sha256' line" in lockfile.problem(root)
    lockfile.stamp(root)
    assert lockfile.problem(root) is None
    assert lockfile.pins(root / lockfile.LOCK)["numpy"] == {
        "version": "2.4.6", "hashes": ["sha256:aa", "sha256:bb"]}
    # an edit outside the dependency lists keeps the lock valid
    _root(tmp_path, version="0.2.0")
    (root / lockfile.LOCK).write_text((root / lockfile.LOCK).read_text())
    lockfile.stamp(root)
    before = lockfile.stored_digest(root / lockfile.LOCK)
    (root / "pyproject.toml").write_text(
        (root / "pyproject.toml").read_text().replace('"0.2.0"', '"0.3.0"'))
    assert lockfile.problem(root) is None
    # a new extra (a merge that brings one) makes it stale, and the CLI says so
    (root / "pyproject.toml").write_text(
        (root / "pyproject.toml").read_text() + 'docs = ["mkdocs-material>=9"]\n')
    why = lockfile.problem(root)
    assert "out of date" in why and "pyproject.toml" in why and "make lock" in why
    r = subprocess.run([sys.executable, str(Path(lockfile.__file__)), "check", str(root)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "make lock" in r.stderr
    assert lockfile.stored_digest(root / lockfile.LOCK) == before   # check changes nothing
    (root / lockfile.CONSTRAINTS).write_text("torch==2.13.0+cpu  # why\n")
    lockfile.stamp(root)
    assert lockfile.problem(root) is None
    (root / lockfile.CONSTRAINTS).write_text("torch==2.14.0+cpu\n")
    assert "out of date" in lockfile.problem(root)


def test_a_missing_lock_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    assert "missing" in lockfile.problem(tmp_path)
    r = subprocess.run([sys.executable, str(Path(lockfile.__file__)), "check", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "requirements.lock is missing" in r.stderr


@pytest.mark.parametrize("line", ["numpy>=1.24", "numpy", "numpy==2.*;python_version<'4'"])
def test_a_loose_requirement_is_reported_as_unpinned(tmp_path, line):
    (tmp_path / lockfile.LOCK).write_text(f"{line}\npandas==3.1.1 --hash=sha256:dd\n")
    pins = lockfile.pins(tmp_path / lockfile.LOCK)
    assert pins["numpy"]["version"] is None and pins["pandas"]["version"] == "3.1.1"
