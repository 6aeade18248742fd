"""Does the size rule's premise hold on real ratings? (issue 13, `pakd.config.profiles`)

The default profile gives a split k times larger than ml-latest-small's 1/k of each default
epoch count (at least two), on the premise that an epoch of k times the ratings holds k
times the optimiser steps, so a larger table needs fewer passes. ml-latest-small cannot be
made larger, but the premise can be tested one step down: train each teacher

  half/E     on a seeded half of the run's train ratings, with its default E epochs;
  full/E÷2   on all of them with half the epochs, as the rule would set for a table twice
             the half's size;
  full/E     the run's own member (all train ratings, E epochs) - what the rule gives up;

and compare them on the valid part of the same split (paired 95% bootstrap intervals over
valid users; the best epoch is chosen on valid in every arm, as in pakd). The rule is
right about the premise when full/E÷2 is no worse than half/E: twice the data at half the
passes loses nothing against the smaller table. ::

    .venv/bin/python benchmarks/epoch_rule.py --run runs/default --out benchmarks/results/<dir>
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished default-profile run")
    ap.add_argument("--models", default="svd,xdeepfm,autoint")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from pakd.config import build_config, load_run_config
    from pakd.config.defaults import TEACHERS
    from pakd.config.sections import arch_of, fit_kwargs
    from pakd.data.encoding import Part
    from pakd.evaluate import evaluate
    from pakd.models import build
    from pakd.recipes.split import load_encoded
    from pakd.rundir import RunDir
    from pakd.runtime import seed_everything
    from pakd.stats import paired, verdict
    from pakd.train import fit

    rd = RunDir(args.run)
    cfg = build_config(base=load_run_config(rd.config))
    cfg.quiet = True
    enc = load_encoded(cfg, rd)
    full = enc.parts["train"]
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = torch.randperm(len(full), generator=gen)[: len(full) // 2].sort().values
    half = Part(full.user[keep], full.item[keep], full.rating[keep])
    ev = dict(ks=[10], positive_above=cfg.eval.positive_above,
              negative_below=cfg.eval.negative_below,
              relevant_min_rating=cfg.eval.relevant_min_rating, chunk=cfg.eval.chunk,
              per_user=True)

    def figures(model) -> dict:
        m = evaluate(model, enc, "valid", **ev)
        return {"per_user": m.pop("per_user"), "rmse": m["rmse"], "ndcg@10": m["ndcg@10"]}

    def train(name: str, part: Part, epochs: int):
        section = getattr(cfg, name)
        mean = float(part.rating.mean())
        seed_everything(cfg.seed * 1000 + TEACHERS.index(name))
        model = build(name, enc.schema, arch_of(section, name), tables=enc.tables,
                      rating_mean=mean)
        kw = {**fit_kwargs(section), "epochs": epochs}
        enc.parts["train"] = part
        enc._seen.clear()
        try:
            t0 = time.perf_counter()
            res = fit(model, enc, **kw, seed=cfg.seed, name=name, quiet=True,
                      relevant_min_rating=cfg.eval.relevant_min_rating)
        finally:
            enc.parts["train"] = full
            enc._seen.clear()
        return model, {"epochs": epochs, "best_epochs": res.best_epochs,
                       "seconds": time.perf_counter() - t0}

    out: dict = {"run": str(args.run), "train_ratings": {"full": len(full), "half": len(half)},
                 "models": {}}
    for name in args.models.split(","):
        e = getattr(cfg, name).epochs
        arms = {}
        m, info = train(name, half, e)
        arms["half/E"] = (figures(m), info)
        m, info = train(name, full, max(1, round(e / 2)))
        arms["full/E/2"] = (figures(m), info)
        member, _ = rd.load_member(name)
        arms["full/E"] = (figures(member), {"epochs": e, "saved member": True})
        row = {a: {"valid_rmse": f["rmse"], "valid_ndcg@10": f["ndcg@10"], **info}
               for a, (f, info) in arms.items()}
        for ref, other in (("half/E", "full/E/2"), ("full/E", "full/E/2")):
            d = paired(arms[ref][0]["per_user"], arms[other][0]["per_user"],
                       metrics=("rmse", "ndcg@10"))
            row[f"{other} - {ref}"] = {
                "rmse": d["rmse"], "rmse_verdict": verdict(d["rmse"], lower_is_better=True),
                "ndcg@10": d["ndcg@10"], "ndcg_verdict": verdict(d["ndcg@10"], False)}
        out["models"][name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "epoch_rule.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
