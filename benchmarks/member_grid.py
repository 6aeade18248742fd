"""A member's settings compared on the valid part of a run's split (never the test part).

    .venv/bin/python benchmarks/member_grid.py --run runs/m --member lightgcn \\
        --grid layers=1,2,3 --grid dim=64,128 --set lr=0.01 --out DIR/lightgcn_grid

Each point of the grid (every combination of the ``--grid`` values, on top of the run's
settings and ``--set``) trains the member from scratch on the run's train part with the
library's own training loop, exactly as `pakd train` would (same seed rule), and records
the best valid NDCG@10 and valid RMSE, their epochs, and the training time. The point
with the best valid NDCG@10 is named, and whether it sits at an edge of the grid. Writes
OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from pakd.config import TRAINED, arch_of, build_config, load_run_config
from pakd.data import load_encoded
from pakd.models import build_on
from pakd.rundir import RunDir
from pakd.runtime import seed_everything
from pakd.train import fit
from pakd.train.sequence import fit_sequence


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse(pairs: list[str]) -> dict[str, list]:
    out = {}
    for p in pairs:
        key, _, vals = p.partition("=")
        out[key] = [_value(v) for v in vals.split(",")] if vals else []
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run directory with split.csv and run.yaml")
    ap.add_argument("--member", required=True, choices=list(TRAINED))
    ap.add_argument("--grid", action="append", default=[], help="key=v1,v2,... (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="key=value (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="output stem (OUT.json, OUT.md)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rd = RunDir(a.run)
    cfg = build_config(base=load_run_config(rd.config))
    cfg.quiet = True
    enc = load_encoded(cfg, rd)
    fixed = {k: v[0] for k, v in parse(a.set).items()}
    grid = parse(a.grid)
    mean = float(enc.parts["train"].rating.mean())
    rows = []
    keys = list(grid)
    for combo in itertools.product(*grid.values()):
        point = dict(zip(keys, combo))
        section = getattr(cfg, a.member).model_copy(update={**fixed, **point})
        seed_everything(cfg.seed * 1000 + TRAINED.index(a.member))
        model = build_on(a.member, enc, arch_of(section, a.member), rating_mean=mean)
        trainer = fit_sequence if a.member == "sasrec" else fit
        t0 = time.perf_counter()
        res = trainer(model, enc, section, seed=cfg.seed, name=a.member, quiet=True,
                      relevant_min_rating=cfg.eval.relevant_min_rating)
        hist = res.history
        best_ndcg = max(h.get("valid_ndcg@10", float("nan")) for h in hist)
        best_rmse = min(h["valid_rmse"] for h in hist)
        rows.append({**point, "valid_ndcg@10": best_ndcg, "valid_rmse": best_rmse,
                     "best_epochs": res.best_epochs, "epochs_run": res.epochs_run,
                     "train_seconds": res.train_seconds,
                     "seconds": time.perf_counter() - t0, "params": model.n_params()})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    edges = {k: ("lower" if best[k] == grid[k][0] else "upper" if best[k] == grid[k][-1]
                 else None) for k in keys if len(grid[k]) > 1}
    out = {"run": str(rd.root), "member": a.member, "fixed": fixed, "grid": grid,
           "threads": a.threads, "rows": rows, "best": {k: best[k] for k in keys},
           "best_at_edge": {k: v for k, v in edges.items() if v}}
    stem = Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    cols = keys + ["valid_ndcg@10", "valid_rmse", "best_epochs", "epochs_run", "train_seconds"]
    lines = [f"# {a.member} on the valid part of {rd.root}", "",
             f"Fixed: {fixed or 'the run settings'}; {a.threads} thread(s).", "",
             "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Best valid NDCG@10: {out['best']}"
              + (f" - at the {out['best_at_edge']} edge of the grid" if out["best_at_edge"]
                 else " (interior or a one-value grid)")]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
