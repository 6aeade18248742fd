"""Recipe `ensemble`: combine the trained members into the ensemble teacher and evaluate it.

Loads the members named by ``ensemble.algorithms``, gives each its task and weight, fixes
each ranking member's logit standardisation on a user sample (from the cached score
matrices), fits the weights on the valid part when ``weights: auto``, and writes
RUN/teachers/ensemble.json and the member/ensemble/baseline table (RUN/teachers.json|md).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import metrics as M
from ..config import RunConfig
from ..data.encoding import Encoded
from ..errors import PakdError
from ..evaluate import exclusion_parts, ranking_metrics
from ..models.ensemble import Ensemble
from ..report.teachers import teachers_markdown
from ..rundir import RunDir, write_json
from ..stats import intervals
from ..runtime import log
from ..evaluate import evaluate_kept
from ..data import load_encoded
from ..scores import ensemble_scores, fit_auto_weights, member_scores


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> dict:
    enc = enc or load_encoded(cfg, rd)
    ens, metas, scores = build(cfg, rd, enc)
    rd.save_ensemble(ens)
    t0 = time.perf_counter()
    full = ensemble_scores(ens, scores)
    got = evaluate_kept(cfg, rd, enc, ens, "ensemble", scores=full,
                        quiet=cfg.quiet)
    em = got["test"]
    em.update(params=ens.n_params(),
              train_seconds=sum(metas[n]["fit"]["train_seconds"] for n in ens.members),
              weights=ens.weights, tasks=ens.tasks, rating_mix=ens.rating_mix,
              ranking_mix=ens.ranking_mix,
              standardisation={n: [float(ens.logit_mean[k]), float(ens.logit_std[k])]
                               for k, n in enumerate(ens.members)},
              eval_seconds=time.perf_counter() - t0)
    members = {}
    for n, meta in metas.items():
        if not meta.get("test") or not rd.per_user(n, "test").is_file():
            meta["test"] = evaluate_kept(cfg, rd, enc, ens.members[n], n, scores=scores.get(n),
                                         quiet=cfg.quiet)["test"]
        m = dict(meta["test"])
        m.update(params=meta["params"], train_seconds=meta["fit"]["train_seconds"],
                 epochs_run=meta["fit"]["epochs_run"], best_epoch=meta["fit"]["best_epoch"],
                 epoch_seconds=meta["fit"]["epoch_seconds"], arch=meta["arch"])
        members[n] = m
    out = {"dataset": cfg.data.dataset, "split": rd.split_summary(),
           "threads": torch.get_num_threads(), "members": members, "ensemble": em,
           "baselines": baselines(enc, cfg, rd)}
    out["rerank"] = rerank_table(cfg, enc, ens, scores, full)
    rows = [*members.items(), ("ensemble", em)]
    origin = origin_ensemble(cfg, rd, enc, ens, scores)
    if origin is not None:
        out["origin_ensemble"] = origin
        rows.append(("origin_ensemble", origin))
    kw = dict(resamples=1000, seed=cfg.seed)      # 95% intervals over resampled test users
    for name, row in rows:
        row["ci95"] = intervals(rd.load_per_user(name, "test"), **kw)
    out["baselines"]["mostpop"]["ci95"] = intervals(
        rd.load_per_user("mostpop", "test"), metrics=("recall@10", "ndcg@10"), **kw)
    write_json(rd.teachers_json, out)
    rd.write_text(rd.teachers_md, teachers_markdown(out))
    log.info("ensemble: test RMSE %.4f, AUC %.4f, NDCG@10 %.4f, Recall@10 %.4f",
             em["rmse"], em["auc"], em["ndcg@10"], em["recall@10"])
    return out


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
    """The task of each member: as given, or balance for members predicting ratings and
    ranking for the others."""
    algos, tasks = cfg.ensemble.algorithms, cfg.ensemble.tasks
    if not tasks:
        return {n: "balance" if "rating" in members[n].outputs
                else "ranking" for n in algos}
    if len(tasks) != len(algos):
        raise PakdError(f"--tasks has {len(tasks)} entries for {len(algos)} algorithms")
    for n, t in zip(algos, tasks):
        if t != "ranking" and "rating" not in members[n].outputs:
            raise PakdError(f"{n} predicts no ratings: give it the task ranking in --tasks")
    return dict(zip(algos, tasks))


def build(cfg: RunConfig, rd: RunDir, enc: Encoded):
    """(ensemble, member metadata, cached member scores of its ranking members)."""
    algos = cfg.ensemble.algorithms
    weights = _weights(cfg)
    members, metas = {}, {}
    for name in algos:
        members[name], metas[name] = rd.load_member(name)
    ens = Ensemble(members, weights or {n: 1.0 for n in algos}, _tasks(cfg, members))
    # every member's (cached) scores: calibration standardises each member's logit
    scores = {n: member_scores(cfg, rd, n, m, enc) for n, m in members.items()}
    ens.calibrate(enc.n_users, cfg.ensemble.calibration_users, cfg.seed, scores=scores)
    if weights is None:
        fit_auto_weights(ens, enc, cfg, scores)
    return ens, metas, scores


def rerank_table(cfg: RunConfig, enc: Encoded, ens: Ensemble, scores: dict,
                 full: torch.Tensor | None) -> dict | None:
    """Each member (and the ensemble) as a re-ranker of the retrieval stage's top-N unseen
    items, for each N of ``ensemble.rerank_n``: test NDCG@10 and Recall@10 of the composed
    system (exact full-catalogue metrics, `pakd.rerank`), and its paired difference from the
    retrieval stage alone (95% bootstrap interval over users). Each member also re-ranks
    with the retrieval score as an input (``<member> + <retrieval>``, `with_retrieval`), its
    weight chosen on the valid part for each N."""
    from ..rerank import BLEND_GRID, candidates, compose, with_retrieval
    from ..stats import bootstrap, paired_of
    from ..train.select import best_on_grid
    ret = cfg.ensemble.retrieval
    if ret not in ens.members or scores.get(ret) is None or not cfg.ensemble.rerank_n:
        return None
    te = enc.parts["test"]
    kw = dict(ks=[10], relevant_min_rating=cfg.eval.relevant_min_rating, chunk=cfg.eval.chunk,
              per_user=True)

    def measured(s):
        m = ranking_metrics(None, enc, "test", scores=s, **kw)
        ranks = m.pop("per_user")
        return m, {"users": np.unique(te.user.numpy()), "rank_users": ranks.pop("users"),
                   **ranks}

    alone, alone_pu = measured(scores[ret])
    boot = dict(metrics=("recall@10", "ndcg@10"), seed=cfg.seed)
    alone_boot = bootstrap(alone_pu, **boot)    # resampled once, read by every comparison
    rerankers = {n: scores[n] for n in ens.members if n != ret and scores.get(n) is not None}
    if full is not None:                 # the ensemble's own scores
        rerankers["ensemble"] = full
    exclude = enc.seen(exclusion_parts("test"))
    exclude_valid = enc.seen(exclusion_parts("valid"))
    table = {}

    def valid_ndcg(s) -> float:
        return ranking_metrics(None, enc, "valid", scores=s, **{**kw, "per_user": False}
                               )["ndcg@10"]

    def against_retrieval(s) -> dict:
        """Test NDCG@10 and Recall@10 of the composed scores ``s``, with the paired
        difference from the retrieval stage alone."""
        m, pu = measured(s)
        return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"],
                "vs_retrieval": paired_of(alone_boot, bootstrap(pu, **boot))}

    for n_cand in cfg.ensemble.rerank_n:
        cands = candidates(scores[ret], exclude, n_cand)
        cands_valid = candidates(scores[ret], exclude_valid, n_cand)
        row = {name: against_retrieval(compose(scores[ret], s, cands))
               for name, s in rerankers.items()}
        for name, s in rerankers.items():
            if name == "ensemble":        # it holds the retrieval member already
                continue
            alpha = best_on_grid(BLEND_GRID, lambda a: valid_ndcg(compose(
                scores[ret], with_retrieval(scores[ret], s, cands_valid, a), cands_valid))).value
            row[f"{name} + {ret}"] = {**against_retrieval(compose(
                scores[ret], with_retrieval(scores[ret], s, cands, alpha), cands)),
                "weight": alpha}
        table[str(n_cand)] = row
    log.info("re-ranking %s's top-N: %s", ret, {n: {k: round(v["ndcg@10"], 4)
                                                   for k, v in row.items()}
                                               for n, row in table.items()})
    return {"retrieval": ret, "retrieval_alone": {"ndcg@10": alone["ndcg@10"],
                                                  "recall@10": alone["recall@10"]},
            "by_n": table}


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


def baselines(enc: Encoded, cfg: RunConfig, rd: RunDir | None = None) -> dict:
    """Global mean (rating) and MostPop (ranking by train popularity) on the test part;
    MostPop's per-user results kept in ``rd`` when given."""
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    tr, te = enc.parts["train"], enc.parts["test"]
    mu = float(tr.rating.mean())
    gm = {"rmse": M.rmse(np.full(len(te), mu), te.rating.numpy(), scale),
          "mae": M.mae(np.full(len(te), mu), te.rating.numpy(), scale),
          "auc": 0.5, "recall@10": None, "ndcg@10": None, "params": 1}
    keep, y = M.binary_labels(te.rating.numpy(), cfg.eval.positive_above, cfg.eval.negative_below)
    base_rate = float(y.mean()) if len(y) else float("nan")
    gm["logloss"] = M.logloss(np.full(len(y), base_rate), y) if len(y) else None
    pop = torch.bincount(tr.item, minlength=enc.n_items).float()
    mp = ranking_metrics(None, enc, "test", ks=cfg.eval.ks,
                         relevant_min_rating=cfg.eval.relevant_min_rating, chunk=cfg.eval.chunk,
                         scores=pop.expand(enc.n_users, -1), per_user=rd is not None)
    if rd is not None:
        ranks = mp.pop("per_user")
        rd.save_per_user("mostpop", "test", {"users": np.unique(te.user.numpy()),
                                             "rank_users": ranks.pop("users"), **ranks})
    mostpop = {"rmse": None, "mae": None, "auc": None, "logloss": None, **mp,
               "params": enc.n_items}
    return {"global_mean": gm, "mostpop": mostpop}
