"""The README's table and the docs' generated parts: regenerated, never typed."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_table_is_the_one_its_kept_run_gives():
    gen = _load("gen_results", ROOT / "docs" / "gen_results.py")
    text = (ROOT / "README.md").read_text()
    assert gen.BLOCK.search(text), "the README lost its generated block"
    assert gen.fill_blocks(text) == text, "run: .venv/bin/python docs/gen_results.py readme"
    assert len(text.splitlines()) <= 200


def test_every_results_marker_has_its_kept_files():
    gen = _load("gen_results", ROOT / "docs" / "gen_results.py")
    marks = [m for p in (ROOT / "docs").rglob("*.md") for m in gen.MARK.findall(p.read_text())]
    assert len(marks) >= 15
    for kind, folder in marks:
        assert kind in gen.KINDS and (ROOT / folder).exists(), (kind, folder)


def test_the_cli_reference_covers_every_command():
    hook = _load("generated", ROOT / "docs" / "hooks" / "generated.py")
    ref = hook.cli_reference()
    for cmd in ("data info", "data split", "train", "ensemble", "fisher", "distill", "report",
                "run", "recommend", "export", "serve", "config show", "tune"):
        assert f"## pakd {cmd} " in ref
    assert "--track" in ref and "--html" in ref and "--svd-factors" in ref   # shared sections too
