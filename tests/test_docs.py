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
        assert kind in gen.KINDS and all((ROOT / f).exists() for f in folder.split(",")), \
            (kind, folder)


def test_the_cli_reference_covers_every_command():
    hook = _load("generated", ROOT / "docs" / "hooks" / "generated.py")
    ref = hook.cli_reference()
    for cmd in ("data info", "data split", "train", "ensemble", "fisher", "distill", "report",
                "run", "recommend", "export", "serve", "config show", "tune", "update",
                "data download"):
        assert f"## pakd {cmd} " in ref
    assert "--track" in ref and "--html" in ref and "--svd-factors" in ref   # shared sections too


def _documented():
    """(object path, members or None) of every `::: path` directive of the API reference."""
    import re
    text = (ROOT / "docs" / "reference" / "api.md").read_text()
    out = {}
    for m in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, re.M):
        members = re.search(r"members: \[(.*?)\]", m.group(2).replace("\n", " "))
        out[m.group(1)] = ([x.strip() for x in members.group(1).split(",")] if members
                           else None)
    return out


def test_every_name_pakd_exports_has_an_api_reference_entry():
    """`pakd.__all__` resolves lazily (pakd/__init__.py), which the reference generator
    cannot see through: each name must be documented where it is defined."""
    import pakd
    docs = _documented()
    for name in pakd.__all__:
        if name == "__version__":
            continue
        obj = getattr(pakd, name)
        module = obj.__module__
        assert (f"{module}.{name}" in docs or name in (docs.get(module) or [])
                or (module in docs and docs[module] is None)), \
            f"pakd.{name} ({module}) has no entry in docs/reference/api.md"


def _documented_commands():
    """Every `pakd ...` command line of a bash block in the docs and the README."""
    import re
    import shlex
    fence = re.compile(r"^```(?:bash|sh)\n(.*?)^```", re.S | re.M)
    for page in sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]):
        for block in fence.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                m = re.search(r"(?:^|[\s/])pakd (.*)$", line.split("  #")[0].strip())
                if m and not line.lstrip().startswith("#"):
                    yield page.relative_to(ROOT), shlex.split(m.group(1), comments=True)


def test_every_documented_command_parses_with_todays_flags(capsys):
    """A renamed or removed flag in a page's example is caught here, not by a reader."""
    from pakd import cli
    from pakd.config import build_config
    seen, parser = 0, cli.build_parser()
    for page, argv in _documented_commands():
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"{page}: pakd {' '.join(argv)}: "
                                 f"{capsys.readouterr().err.strip().splitlines()[-1]}")
        overrides = cli._overrides(args)
        build_config(overrides=overrides, profile=overrides.get("profile"))
        seen += 1
    assert seen >= 30


def test_every_kept_results_folder_is_indexed_and_quoted():
    """benchmarks/results/INDEX.md: a folder no page quotes is removed, and every folder
    kept has its row."""
    results = ROOT / "benchmarks" / "results"
    index = (results / "INDEX.md").read_text()
    pages = "\n".join(p.read_text() for p in [*(ROOT / "docs").rglob("*.md"),
                                               ROOT / "README.md"])
    folders = sorted(p.name for p in results.iterdir() if p.is_dir())
    assert folders
    for name in folders:
        assert f"| `{name}/` |" in index, f"{name}: no row in benchmarks/results/INDEX.md"
        assert name in pages, f"{name}: quoted by no page of docs/ or the README"
