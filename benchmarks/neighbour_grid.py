"""A neighbourhood member's neighbour counts compared on the valid part of finished runs
(never the test part): the member is fitted once per run on the run's train part, exactly
as `pakd train` fits it, then each count of ``--ks`` is scored by its valid RMSE; the
run's own choice (its ``teachers.json``) is named beside the best count.

    .venv/bin/python benchmarks/neighbour_grid.py --member knn_interp --ks 1,2,3,4,5,10 \\
        --runs runs/interp/seed-0 runs/tnow/seed-0 --out DIR/knn_interp_ks

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config, load_run_config
from pakd.data import load_encoded
from pakd.rundir import RunDir, read_json
from pakd.train.closed_form import fit_closed_form


def one_run(run: str, member: str, ks: list[int]) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=load_run_config(rd.config))
    getattr(cfg, member).ks = ks
    enc = load_encoded(cfg, rd)
    _, meta = fit_closed_form(member, cfg, enc, float(enc.parts["train"].rating.mean()))
    valid = {int(h["k"]): h["valid_rmse"] for h in meta["fit"]["history"]}
    members = read_json(rd.teachers_json)["members"] if rd.teachers_json.is_file() else {}
    chosen = members.get(member, {}).get("arch", {}).get("k")
    best = min(valid, key=valid.get)
    return {"run": run, "split": cfg.split.method, "seed": cfg.seed, "valid_rmse": valid,
            "best_k": best, "run_k": chosen,
            "gain_over_run_k": None if chosen not in valid else valid[chosen] - valid[best]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--member", default="knn_interp", choices=["knn", "uknn", "knn_interp"])
    ap.add_argument("--ks", required=True, help="neighbour counts, comma-separated")
    ap.add_argument("--runs", nargs="+", required=True, help="finished run directories")
    ap.add_argument("--out", required=True, help="output stem (OUT.json, OUT.md)")
    a = ap.parse_args(argv)
    ks = sorted({int(k) for k in a.ks.split(",")})
    rows = [one_run(r, a.member, ks) for r in a.runs]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"member": a.member, "ks": ks, "runs": rows}, indent=2))
    head = "| run | split | seed | " + " | ".join(f"k {k}" for k in ks) + \
        " | best k | run's k | run's k minus best |"
    lines = [f"# {a.member}: valid RMSE by neighbour count", "", head,
             "|" + "---|" * (len(ks) + 6)]
    for r in rows:
        gain = "–" if r["gain_over_run_k"] is None else f"{r['gain_over_run_k']:+.4f}"
        lines.append(f"| {r['run']} | {r['split']} | {r['seed']} | "
                     + " | ".join(f"{r['valid_rmse'][k]:.4f}" for k in ks)
                     + f" | {r['best_k']} | {r['run_k']} | {gain} |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
