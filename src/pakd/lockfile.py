"""The lock file (requirements.lock): every package and its hashes, and whether it still
matches pyproject.toml.

The lock stores a digest of the dependency lists it was compiled from (pyproject's
dependencies, every extra, requires-python, the build requirements, lock-constraints.txt);
`make` compares it with today's before installing, so a lock out of date with
pyproject.toml is named instead of silently installed. Standard library only: the
Makefile runs this file with the system Python before the virtual environment exists:

    python3 src/pakd/lockfile.py check     # exit 1 and say why when the lock is stale
    python3 src/pakd/lockfile.py stamp     # after pip-compile: store today's digest
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

LOCK = "requirements.lock"
CONSTRAINTS = "lock-constraints.txt"
PYPROJECT = "pyproject.toml"
DIGEST_LINE = "# pyproject-deps-sha256: "
REFRESH = "run `make lock` (then commit requirements.lock)"

# name[extras]==version with nothing loose after it (a wildcard 2.* is no pin)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\*]+)(?=\s|;|\\|$)")


def normalise(name: str) -> str:
    """PEP 503 names: 'Typing_Extensions' and 'typing-extensions' are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:             # Python 3.10
        import tomli as tomllib     # type: ignore[no-redef]
    with open(path, "rb") as f:
        return tomllib.load(f)


def digest(root: Path) -> str:
    """sha256 of what the lock is compiled from; any other edit of pyproject.toml (version,
    pytest options, package data) leaves it unchanged."""
    root = Path(root)
    py = _toml(root / PYPROJECT)
    project = py.get("project", {})
    cons = root / CONSTRAINTS
    lines = [ln.split("#")[0].strip() for ln in cons.read_text().splitlines()] \
        if cons.exists() else []
    what = {"dependencies": sorted(project.get("dependencies", [])),
            "optional-dependencies": {k: sorted(v) for k, v in
                                      sorted(project.get("optional-dependencies", {}).items())},
            "requires-python": project.get("requires-python"),
            "build-system": sorted(py.get("build-system", {}).get("requires", [])),
            "constraints": sorted(ln for ln in lines if ln)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def stored_digest(lock: Path) -> str | None:
    for line in Path(lock).read_text().splitlines():
        if line.startswith(DIGEST_LINE):
            return line[len(DIGEST_LINE):].strip()
    return None


def pins(lock: Path) -> dict[str, dict]:
    """{normalised name: {"version": v, "hashes": [...]}} for every requirement line; a
    requirement that is not pinned with == gets version None (the tests refuse it)."""
    out: dict[str, dict] = {}
    current = None
    for raw in Path(lock).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[0].isspace() or line.startswith("--hash"):
            for h in re.findall(r"--hash=(\S+)", line):
                if current is not None:
                    out[current]["hashes"].append(h)
            continue
        m = _PIN.match(line)
        if m:
            current = normalise(m.group(1))
            out[current] = {"version": m.group(3), "hashes": []}
        else:
            current = normalise(re.split(r"[\s<>=!~;\[\\@]", line, maxsplit=1)[0])
            out[current] = {"version": None, "hashes": [], "line": line}
        out[current]["hashes"].extend(re.findall(r"--hash=(\S+)", line))
    return out


def problem(root: Path) -> str | None:
    """Why the lock cannot be installed as it is, or None when it matches pyproject.toml."""
    root = Path(root)
    lock = root / LOCK
    if not lock.exists():
        return f"{lock} is missing: {REFRESH}"
    stored = stored_digest(lock)
    if stored is None:
        return (f"{lock} has no '{DIGEST_LINE.strip('# :')}' line, so it cannot be checked "
                f"against {PYPROJECT}: {REFRESH}")
    if stored != digest(root):
        return (f"{lock} is out of date with {root / PYPROJECT}: the dependency lists (or "
                f"{CONSTRAINTS}) changed since it was compiled; {REFRESH}")
    return None


def stamp(root: Path) -> None:
    """Put today's digest on the lock's second line (pip-compile rewrote the file)."""
    lock = Path(root) / LOCK
    lines = [ln for ln in lock.read_text().splitlines() if not ln.startswith(DIGEST_LINE)]
    lines.insert(1 if lines and lines[0] == "#" else 0, DIGEST_LINE + digest(root))
    tmp = lock.with_name(f".{lock.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, lock)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "stamp"):
        print("usage: lockfile.py check|stamp [ROOT]", file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) > 1 else Path.cwd()
    if argv[0] == "stamp":
        stamp(root)
        return 0
    why = problem(root)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
