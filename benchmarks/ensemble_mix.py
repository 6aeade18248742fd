"""How the ensemble's ranking weights are fitted, compared on finished runs: each member's
logits z-scored per catalogue or per user, the weights fitted by the best valid NDCG@10 on a
grid or by the valid items' likelihood (`pakd.scores.fit_auto_weights`). The choice is made
on the valid part only: the valid users are split in two halves (seeded), the weights fitted
on one half and scored on the other (valid NDCG@10 of both folds, averaged); the weights
fitted on every valid user are then scored on the test part, which only reports.

    python benchmarks/ensemble_mix.py --runs runs/seeds_head --seeds 0,1,2,3,4 \
        --out benchmarks/results/2026-12-07_ensemble_mix/random.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from pakd.atomic import atomic_write_text
from pakd.config.resolve import build_config
from pakd.data import load_encoded
from pakd.evaluate import ranking_metrics
from pakd.models.ensemble import Ensemble, default_task
from pakd.rundir import RunDir
from pakd.scores import fit_auto_weights, fit_standardisation, member_scores

PROCEDURES = [("catalogue", "ndcg"), ("user", "ndcg"), ("catalogue", "likelihood"),
              ("user", "likelihood")]


def ndcg(enc, cfg, scores: torch.Tensor, part: str, users=None) -> float:
    return ranking_metrics(None, enc, part, ks=[10],
                           relevant_min_rating=cfg.eval.relevant_min_rating,
                           chunk=cfg.eval.chunk, scores=scores,
                           users=None if users is None else users.numpy())["ndcg@10"]


def one_seed(run: Path, names: list[str]) -> dict:
    rd = RunDir(run)
    base = yaml.safe_load(open(rd.root / "run.yaml"))
    cfg0 = build_config(base=base)
    enc = load_encoded(cfg0, rd)
    members = {n: rd.load_member(n)[0] for n in names}
    scores = {n: member_scores(cfg0, rd, n, m, enc) for n, m in members.items()}
    valid = torch.unique(enc.parts["valid"].user)
    order = torch.randperm(len(valid), generator=torch.Generator().manual_seed(cfg0.seed + 7))
    halves = [torch.sort(valid[order[: len(valid) // 2]]).values,
              torch.sort(valid[order[len(valid) // 2:]]).values]
    out = {}
    for standardise, fit in PROCEDURES:
        cfg = build_config(base=base, overrides={"ensemble.standardise": standardise,
                                                 "ensemble.mix_fit": fit, "quiet": True})
        tasks = {n: default_task(m.outputs) for n, m in members.items()}
        ens = Ensemble(members, {n: 1.0 for n in names}, tasks, standardise=standardise)
        fit_standardisation(ens, enc, cfg, scores)
        every = torch.arange(enc.n_users)

        def mixed() -> torch.Tensor:
            return ens.combine_scores({n: scores[n] for n in names}, every)

        folds = []
        for a, b in ((0, 1), (1, 0)):
            fit_auto_weights(ens, enc, cfg, scores, users=halves[a])
            folds.append(ndcg(enc, cfg, mixed(), "valid", halves[b]))
        fit_auto_weights(ens, enc, cfg, scores, users=valid)
        out[f"{standardise}/{fit}"] = {"cv_valid_ndcg@10": float(np.mean(folds)),
                                       "folds": folds, "weights": dict(ens.ranking_mix),
                                       "test_ndcg@10": ndcg(enc, cfg, mixed(), "test")}
        print(run.name, standardise, fit, json.dumps(out[f"{standardise}/{fit}"]), flush=True)
    if "ease" in scores:
        out["ease"] = {"valid_ndcg@10": ndcg(enc, cfg0, scores["ease"], "valid"),
                       "test_ndcg@10": ndcg(enc, cfg0, scores["ease"], "test")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a pakd run --seeds folder")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--members", default="svd,autoint,ease")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    per_seed = {s: one_seed(Path(a.runs) / f"seed-{s}", a.members.split(",")) for s in seeds}
    summary = {}
    for key in [f"{s}/{f}" for s, f in PROCEDURES]:
        cv = [per_seed[s][key]["cv_valid_ndcg@10"] for s in seeds]
        test = [per_seed[s][key]["test_ndcg@10"] for s in seeds]
        summary[key] = {"cv_valid_ndcg@10_mean": float(np.mean(cv)),
                        "test_ndcg@10_mean": float(np.mean(test))}
        if all("ease" in per_seed[s] for s in seeds):
            summary[key]["test_minus_ease"] = [t - per_seed[s]["ease"]["test_ndcg@10"]
                                               for t, s in zip(test, seeds)]
    chosen = max(summary, key=lambda k: summary[k]["cv_valid_ndcg@10_mean"])
    out = {"runs": a.runs, "seeds": seeds, "members": a.members.split(","),
           "chosen_on_valid": chosen, "summary": summary, "per_seed": per_seed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out), json.dumps(out, indent=1))
    for k, v in summary.items():
        print(f"{k:22s} cv valid {v['cv_valid_ndcg@10_mean']:.4f}  "
              f"test {v['test_ndcg@10_mean']:.4f}")
    print("chosen on valid:", chosen)


if __name__ == "__main__":
    main()
