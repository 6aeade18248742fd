"""Recipe `ensemble`: combine the trained members into the ensemble teacher and evaluate it.

Loads the members of ``ensemble.algorithms``, gives each its task and weight, standardises each
ranking member's logit (from the cached score matrices), fits the weights on valid when
``weights: auto``; writes RUN/teachers/ensemble.json (+ .users.safetensors), teachers.json|md.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..config import RunConfig
from ..data import load_encoded
from ..data.encoding import Encoded
from ..errors import PakdError
from ..evaluate import baselines, evaluate_kept
from ..models.ensemble import Ensemble, default_task
from ..report.teachers import teachers_markdown
from ..rerank import rerank_table
from ..results import TeachersReport, write_result
from ..rundir import RunDir
from ..runtime import log
from ..scores import ensemble_scores, fit_auto_weights, fit_standardisation, member_scores
from ..stats import intervals


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> TeachersReport:
    enc = enc or load_encoded(cfg, rd)
    ens, metas, scores = build(cfg, rd, enc)
    rd.save_ensemble(ens)
    t0 = time.perf_counter()
    full = ensemble_scores(ens, scores)
    em = evaluate_kept(cfg, rd, enc, ens, "ensemble", scores=full, quiet=cfg.quiet)["test"]
    em.update(params=ens.n_params(),
              train_seconds=sum(metas[n]["fit"]["train_seconds"] for n in ens.members),
              weights=ens.weights, tasks=ens.tasks, rating_mix=ens.rating_mix,
              ranking_mix=ens.ranking_mix, rating_offset=ens.rating_offset,
              standardisation=ens.standardisation(), eval_seconds=time.perf_counter() - t0)
    members = member_rows(cfg, rd, enc, ens, metas, scores)
    t = [m["score_seconds"] for m in members.values()]    # None: an older member unmeasured
    em["score_seconds"] = None if None in t else sum(t)
    base = baselines(enc, cfg, rd)
    rerank = rerank_table(cfg, enc, ens, scores, full)
    origin = origin_ensemble(cfg, rd, enc, ens, scores)
    out = TeachersReport(dataset=cfg.data.dataset, split=rd.split_summary(), baselines=base,
                         threads=torch.get_num_threads(), members=members, ensemble=em,
                         rerank=rerank, **({} if origin is None else {"origin_ensemble": origin}))
    add_intervals(cfg, rd, out)
    write_result(rd.teachers_json, out)
    rd.write_text(rd.teachers_md, teachers_markdown(out))
    log.info("ensemble: test RMSE %.4f, AUC %.4f, NDCG@10 %.4f, Recall@10 %.4f",
             em["rmse"], em["auc"], em["ndcg@10"], em["recall@10"])
    return out


def member_rows(cfg, rd, enc, ens, metas: dict, scores: dict) -> dict[str, dict]:
    """Each member's test metrics with its size, training and catalogue scoring figures
    (evaluated again when a member's per-user results are missing)."""
    members = {}
    for n, meta in metas.items():
        if not meta.get("test") or not rd.per_user(n, "test").is_file():
            meta["test"] = evaluate_kept(cfg, rd, enc, ens.members[n], n, scores=scores.get(n),
                                         quiet=cfg.quiet)["test"]
        fit = meta["fit"]
        members[n] = {**meta["test"], "params": meta["params"],
                      "train_seconds": fit["train_seconds"], "epochs_run": fit["epochs_run"],
                      "best_epoch": fit["best_epoch"], "epoch_seconds": fit["epoch_seconds"],
                      "score_seconds": fit.get("score_seconds"), "arch": meta["arch"]}
    return members


def add_intervals(cfg: RunConfig, rd: RunDir, out: TeachersReport) -> None:
    """95% intervals over resampled test users for every row of the table."""
    kw = dict(resamples=1000, seed=cfg.seed)
    rows = [*out.members.items(), ("ensemble", out.ensemble)]
    if out.origin_ensemble is not None:
        rows.append(("origin_ensemble", out.origin_ensemble))
    for name, row in rows:
        row["ci95"] = intervals(rd.load_per_user(name, "test"), **kw)
    out.baselines["mostpop"]["ci95"] = intervals(
        rd.load_per_user("mostpop", "test"), metrics=("recall@10", "ndcg@10"), **kw)


# the origin report's ensemble, evaluated beside pakd's (auto weights by default)
ORIGIN = {"weights": {"svd": 0.4, "xdeepfm": 0.4, "autoint": 0.2},
          "tasks": {"svd": "ranking", "xdeepfm": "rating", "autoint": "balance"}}


def _weights(cfg: RunConfig) -> dict[str, float] | None:
    algos = cfg.ensemble.algorithms
    if cfg.ensemble.weights == "auto":
        return None
    w = cfg.ensemble.weights
    if len(w) != len(algos) or min(w) < 0 or not all(map(np.isfinite, w)):
        raise PakdError(f"--weights needs {len(algos)} finite non-negative numbers, one per "
                        f"member of --algorithms {','.join(algos)} (or auto), got {w}")
    return dict(zip(algos, map(float, w)))


def _tasks(cfg: RunConfig, members: dict) -> dict[str, str]:
    """The task of each member: as given, or by what it predicts (`default_task`)."""
    algos, tasks = cfg.ensemble.algorithms, cfg.ensemble.tasks
    if not tasks:
        return {n: default_task(members[n].outputs) for n in algos}
    if len(tasks) != len(algos):
        raise PakdError(f"--tasks has {len(tasks)} entries for {len(algos)} algorithms")
    for n, t in zip(algos, tasks):
        if t != "ranking" and "rating" not in members[n].outputs:
            raise PakdError(f"{n} predicts no ratings: give it the task ranking in --tasks")
        if t != "rating" and "ranking" not in members[n].outputs:
            raise PakdError(f"{n} does not rank: give it the task rating in --tasks")
    return dict(zip(algos, tasks))


def build(cfg: RunConfig, rd: RunDir, enc: Encoded):
    """(ensemble, member metadata, cached member scores of its ranking members)."""
    algos = cfg.ensemble.algorithms
    weights = _weights(cfg)
    members, metas = {}, {}
    for name in algos:
        members[name], metas[name] = rd.load_member(name)
    ens = Ensemble(members, weights or {n: 1.0 for n in algos}, _tasks(cfg, members),
                   standardise=cfg.ensemble.standardise)
    # every member's (cached) scores: calibration standardises each member's logit
    scores = {n: member_scores(cfg, rd, n, m, enc) for n, m in members.items()}
    fit_standardisation(ens, enc, cfg, scores)
    if weights is None:
        fit_auto_weights(ens, enc, cfg, scores)
    return ens, metas, scores


def origin_ensemble(cfg: RunConfig, rd: RunDir, enc: Encoded, ens: Ensemble,
                    scores: dict) -> dict | None:
    """The origin report's ensemble (0.4/0.4/0.2, tasks ranking/rating/balance) of the run's
    svd, xdeepfm and autoint, evaluated like pakd's own; None when one of them is not an
    ensemble member or the ensemble is that one already."""
    names = list(ORIGIN["weights"])
    if not all(n in ens.members for n in names):
        return None
    if (set(ens.members) == set(names) and ens.weights == ORIGIN["weights"]
            and ens.tasks == ORIGIN["tasks"]):
        return None
    orig = Ensemble({n: ens.members[n] for n in names}, ORIGIN["weights"], ORIGIN["tasks"])
    orig.calibrate(enc.n_users, cfg.ensemble.calibration_users, cfg.seed, scores=scores)
    got = evaluate_kept(cfg, rd, enc, orig, "origin_ensemble",
                        scores=ensemble_scores(orig, scores), quiet=cfg.quiet)
    return {**got["test"], "params": orig.n_params(), "weights": orig.weights,
            "tasks": orig.tasks, "rating_mix": orig.rating_mix, "ranking_mix": orig.ranking_mix}
