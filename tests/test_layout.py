"""The layout the redesign promised, guarded: no import loops between pakd's modules, run
paths built only in `pakd.rundir`, and the stages listed once."""
import ast
from pathlib import Path

import pakd

SRC = Path(pakd.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """pakd modules a file imports (at any level: lazy imports count too)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pakd"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("pakd"))
    return out


def test_no_import_loops():
    files = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {m: {t for t in _imports(p) if t in files and t != m} for m, p in files.items()}
    # a package's __init__ re-exporting its own modules is not a loop
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import loop: " + " -> ".join(stack + [m, t]))
            if not state.get(t):
                visit(t, stack + [m])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [])


def test_run_paths_are_built_in_rundir_only():
    names = ("split.csv", "split.json", "run.yaml", "teachers.json", "ensemble.json",
             "pakd_experiment", "ensemble_fisher_analysis", "best_student_model", "timings.json",
             "summary.md", "analysis_results", ".state.pt", ".scores.safetensors")
    # the split's own files are named where the split is written and read (data must not
    # import the run directory); rundir takes those names from there
    own = {"splits.py": {"split.csv", "split.json"}}
    for p in SRC.rglob("*.py"):
        if p.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = [n for n in names if n in node.value and " " not in node.value
                       and n not in own.get(p.name, ())]
                assert not hit, (p, node.value)


def test_the_stage_list_is_in_one_place():
    from pakd.recipes import STAGES
    assert list(STAGES) == ["split", "teachers", "ensemble", "fisher", "distill", "report"]
    for p in SRC.rglob("*.py"):
        text = p.read_text()
        assert "getattr(pipeline" not in text and "stage_{" not in text, p


def test_no_recipe_imports_a_recipe_and_libraries_import_none():
    """Recipes tell a stage's story over library modules: none imports another recipe
    (the package's stage list aside), and data, models, deploy, train, prune and distill
    import no recipe at all."""
    libraries = ("pakd.data", "pakd.models", "pakd.deploy", "pakd.train", "pakd.prune",
                 "pakd.distill", "pakd.fisher", "pakd.report")
    for p in SRC.rglob("*.py"):
        mod = _module(p)
        recipes = {t for t in _imports(p) if t.startswith("pakd.recipes.")}
        if mod.startswith("pakd.recipes.") and mod != "pakd.recipes":
            assert not recipes, (mod, recipes)
        if mod.startswith(libraries):
            assert not {t for t in _imports(p) if t.startswith("pakd.recipes")}, mod


def test_run_all_asks_for_no_stage_by_name():
    import inspect

    from pakd import recipes
    source = inspect.getsource(recipes._stages)
    for name in recipes.STAGES:
        assert f'"{name}"' not in source, name


def test_recipes_are_short_stories():
    """A recipe tells its stage's story over library modules: at most 150 lines each."""
    long = {p.name: n for p in (SRC / "recipes").glob("*.py")
            if (n := len(p.read_text().splitlines())) > 150}
    assert not long, long


# the CLI's parser is a table, one entry per flag (the one exception issue 32 allows)
LONG_ALLOWED = {"pakd.cli.build_parser"}


def test_no_function_over_60_lines():
    long = []
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                name = f"{_module(p)}.{node.name}"
                if n > 60 and name not in LONG_ALLOWED:
                    long.append(f"{name} ({n} lines)")
    assert not long, long
