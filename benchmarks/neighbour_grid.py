"""A neighbourhood member's neighbour counts compared on the valid part of finished runs
(the test part only reports): the member is fitted once per run on the run's train part, exactly
as `pakd train` fits it, then each count of ``--ks`` is scored by its valid RMSE; the
run's own choice (its ``teachers.json``) is named beside the best count. With ``--mix``
each count's member also enters the run's rating mix beside the other rating members
(non-negative least squares with an offset, as `rating_stack.py`), fitted on one seeded half
of the valid ratings and scored on the other ("cv"); the mix fitted on all of valid is
scored on the test part, which only reports.

    .venv/bin/python benchmarks/neighbour_grid.py --member knn_interp --ks 1,2,3,4,5,10 \\
        --runs runs/interp/seed-0 runs/tnow/seed-0 --out DIR/knn_interp_ks [--mix]

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config, load_run_config
from pakd.data import load_encoded
from pakd.evaluate import predict_ratings
from pakd.report.tables import markdown_table
from pakd.rundir import RunDir, read_json
from pakd.train.closed_form import fit_closed_form
from rating_stack import Fold, fit_nnls, nnls_offset


def mix_by_k(rd: RunDir, enc, model, member: str, others: list[str], ks: list[int],
             seed: int) -> dict:
    """{k: cv valid RMSE and test RMSE of the rating mix of ``others`` and ``model`` at k}."""
    parts = ("valid", "test")
    pred = {p: [predict_ratings(rd.load_member(n)[0], enc.parts[p].user, enc.parts[p].item)
                .double().numpy() for n in others] for p in parts}
    y = {p: enc.parts[p].rating.double().numpy() for p in parts}
    fold = Fold(y, seed, (enc.schema.rating_min, enc.schema.rating_max))
    out = {"members": others + [member]}
    for k in ks:
        model.k = k
        mine = {p: predict_ratings(model, enc.parts[p].user, enc.parts[p].item).double()
                .numpy() for p in parts}
        out[k] = fold.score(nnls_offset({p: pred[p] + [mine[p]] for p in parts}), fit_nnls)
    return out


def one_run(run: str, member: str, ks: list[int], mix: bool = False) -> dict:
    rd = RunDir(run)
    cfg = build_config(base=load_run_config(rd.config))
    getattr(cfg, member).ks = ks
    enc = load_encoded(cfg, rd)
    model, meta = fit_closed_form(member, cfg, enc, float(enc.parts["train"].rating.mean()))
    valid = {int(h["k"]): h["valid_rmse"] for h in meta["fit"]["history"]}
    teachers = read_json(rd.teachers_json) if rd.teachers_json.is_file() else {}
    chosen = teachers.get("members", {}).get(member, {}).get("arch", {}).get("k")
    best = min(valid, key=valid.get)
    out = {"run": run, "split": cfg.split.method, "seed": cfg.seed, "valid_rmse": valid,
           "best_k": best, "run_k": chosen,
           "gain_over_run_k": None if chosen not in valid else valid[chosen] - valid[best]}
    if mix:
        others = [n for n in teachers["ensemble"]["rating_mix"] if n not in (member, "offset")]
        out["mix"] = mix_by_k(rd, enc, model, member, others, ks, cfg.seed)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--member", default="knn_interp", choices=["knn", "uknn", "knn_interp"])
    ap.add_argument("--ks", required=True, help="neighbour counts, comma-separated")
    ap.add_argument("--runs", nargs="+", required=True, help="finished run directories")
    ap.add_argument("--out", required=True, help="output stem (OUT.json, OUT.md)")
    ap.add_argument("--mix", action="store_true",
                    help="also refit the run's rating mix with each count (cv on valid)")
    a = ap.parse_args(argv)
    ks = sorted({int(k) for k in a.ks.split(",")})
    rows = [one_run(r, a.member, ks, a.mix) for r in a.runs]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"member": a.member, "ks": ks, "runs": rows}, indent=2))
    cols = [(f"k{k}", f"k {k}") for k in ks]
    table = [{"run": r["run"], "split": r["split"], "seed": r["seed"], "best": r["best_k"],
              "run_k": r["run_k"], **{f"k{k}": r["valid_rmse"][k] for k in ks},
              "gain": None if r["gain_over_run_k"] is None else f"{r['gain_over_run_k']:+.4f}"}
             for r in rows]
    lines = [f"# {a.member}: valid RMSE by neighbour count", "", markdown_table(
        table, [("run", "run"), ("split", "split"), ("seed", "seed"), *cols,
                ("best", "best k"), ("run_k", "run's k"), ("gain", "run's k minus best")])]
    if a.mix:
        table = []
        for r in rows:
            m = r["mix"]
            cv = {k: m[k]["cv_valid_rmse"] for k in ks}
            best = min(cv, key=cv.get)
            table.append({"run": r["run"], "best": best,
                          **{f"k{k}": f"{cv[k]:.4f} ({m[k]['test_rmse']:.4f})" for k in ks},
                          "gain": None if r["run_k"] not in cv
                          else f"{cv[r['run_k']] - cv[best]:+.4f}"})
        mean = {k: float(np.mean([r["mix"][k]["cv_valid_rmse"] for r in rows])) for k in ks}
        lines += ["", "The rating mix with each count: cv valid RMSE (test RMSE)", "",
                  markdown_table(table, [("run", "run"), *cols, ("best", "best k on cv"),
                                         ("gain", "run's k minus best, cv")]),
                  "", "Mean cv valid RMSE over the runs: " + ", ".join(
                      f"k {k} {v:.5f}" for k, v in mean.items())]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
