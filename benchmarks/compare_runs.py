"""Two runs' figures side by side: members, ensemble, Fisher checks and every student.

    .venv/bin/python benchmarks/compare_runs.py runs/before runs/after

Used to check that a change leaves results alone (every line "same") or to list what moved.
``--every-file`` instead compares every JSON file of the two runs whole, timings, speed and
memory left out (the rules of `kill_resume.py`), and exits 1 on any difference. Paths a run
records are as it was given them: run both from the same directory, or with the same --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pakd.results import FisherAnalysis, PakdExperiment, TeachersReport, load_result
from pakd.rundir import RunDir


def _line(what: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return f"{what}: {a} | {b}"
    same = abs(a - b) < 1e-9
    return f"{what}: {a:.5f} | {b:.5f} " + ("same" if same else f"(Δ {b - a:+.5f})")


def compare(a: RunDir, b: RunDir) -> list[str]:
    out = []
    ta, tb = (load_result(r.teachers_json, TeachersReport) for r in (a, b))
    for n in ta.members:
        for k in ("rmse", "auc", "ndcg@10"):
            out.append(_line(f"{n} {k}", ta.members[n][k], tb.members[n][k]))
    for k in ("rmse", "auc", "ndcg@10"):
        out.append(_line(f"ensemble {k}", ta.ensemble[k], tb.ensemble[k]))
    fa, fb = (load_result(r.fisher_json, FisherAnalysis) for r in (a, b))
    for n in fa.models:
        va, vb = fa.models[n]["validation"], fb.models[n]["validation"]
        for k in ("spearman_empirical", "spearman_true", "spearman_magnitude"):
            out.append(_line(f"fisher {n} {k}", va[k], vb[k]))
        out.append(_line(f"fisher {n} friendliness", fa.models[n]["pruning_friendliness"],
                         fb.models[n]["pruning_friendliness"]))
        for k in ("rmse_after", "ndcg@10_after"):
            out.append(_line(f"fisher {n} plan {k}", fa.models[n]["plan"][k],
                             fb.models[n]["plan"][k]))
    pa, pb = (load_result(r.pakd_json, PakdExperiment) for r in (a, b))
    rows = {(r["method"], r["pruning_ratio"]): r for r in pa.rows}
    for r in pb.rows:
        x = rows.get((r["method"], r["pruning_ratio"]))
        if x is None:
            continue
        name = f"{r['method']}@{r['pruning_ratio']:g}"
        out.append(f"{name} params: {x['params']:,} | {r['params']:,}")
        for k in ("rmse", "ndcg@10"):
            out.append(_line(f"{name} {k}", x[k], r[k]))
    ba, bb = pa.best_student, pb.best_student
    out.append(f"best student: {ba.get('method')}@{ba.get('pruning_ratio')} | "
               f"{bb.get('method')}@{bb.get('pruning_ratio')}")
    return out


def every_file(a: Path, b: Path) -> list[str]:
    """One line per JSON file of ``a`` (stage times aside): equal, or its differences. A kept
    folder holds a run's files flat, so a file not at the same path in ``b`` is matched by
    its name when exactly one file in ``b`` has it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from kill_resume import differences, strip
    out, by_name = [], {}
    for f in b.rglob("*.json"):                   # b's files by name, walked once
        by_name.setdefault(f.name, []).append(f)
    for p in sorted(a.rglob("*.json")):
        rel = p.relative_to(a)
        if rel.name == "timings.json":
            continue
        other = b / rel
        if not other.is_file():
            named = by_name.get(rel.name, [])
            if len(named) != 1:
                out.append(f"{rel}: missing in {b}")
                continue
            other = named[0]
        diff = differences(*(strip(json.loads(f.read_text())) for f in (p, other)))
        out += [f"{rel}: equal"] if not diff else [f"{rel}: {d}" for d in diff]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--every-file", action="store_true",
                    help="compare every JSON file whole (timings, speed, memory aside)")
    a = ap.parse_args(argv)
    if a.every_file:
        lines = every_file(Path(a.before), Path(a.after))
        bad = [x for x in lines if not x.endswith(": equal")]
        print("\n".join(lines + [f"{len(lines) - len(bad)} files equal, {len(bad)} differences"]))
        return 1 if bad else 0
    print(f"{a.before} | {a.after}")
    print("\n".join(compare(RunDir(a.before), RunDir(a.after))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
