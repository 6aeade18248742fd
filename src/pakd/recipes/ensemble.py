"""Recipe `ensemble`: combine the trained members into the ensemble teacher and evaluate it.

Loads the members named by ``ensemble.algorithms``, gives each its task and weight, fixes
each ranking member's logit standardisation on a user sample (from the cached score
matrices), fits the weights on the valid part when ``weights: auto``, and writes
RUN/teachers/ensemble.json and the member/ensemble/baseline table (RUN/teachers.json|md).
"""
from __future__ import annotations

import time
from itertools import product

import numpy as np
import torch

from .. import metrics as M
from ..config import RunConfig
from ..data.encoding import Encoded
from ..errors import PakdError
from ..evaluate import exclusion_parts, predict_ratings, ranking_metrics, score_matrix
from ..models.ensemble import Ensemble
from ..report.teachers import teachers_markdown
from ..rundir import RunDir, write_json
from ..stats import intervals
from ..runtime import log, progress
from ..evaluate import evaluate_kept
from ..data import load_encoded
from ..scores import ensemble_scores, member_scores


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
            alpha = max(BLEND_GRID, key=lambda a: valid_ndcg(compose(
                scores[ret], with_retrieval(scores[ret], s, cands_valid, a), cands_valid)))
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


def fit_auto_weights(ens: Ensemble, enc: Encoded, cfg: RunConfig,
                     scores: dict[str, torch.Tensor | None]) -> None:
    """Rating: non-negative least squares of the valid ratings on the members' predictions.
    Ranking: the convex weights with the best validation NDCG@10 (`search_simplex`)."""
    from scipy.optimize import nnls
    va = enc.parts["valid"]
    rmembers = list(ens.rating_mix)
    X = torch.stack([predict_ratings(ens.members[n], va.user, va.item) for n in rmembers],
                    1).double().numpy()
    w, _ = nnls(X, va.rating.double().numpy())
    ens.rating_mix = {n: float(v) for n, v in zip(rmembers, w)}
    kmembers = list(ens.ranking_mix)
    if len(kmembers) == 1:
        return
    users = weight_users(enc, cfg, [n for n in kmembers if scores.get(n) is None])
    row = torch.full((enc.n_users,), -1, dtype=torch.long)
    row[users] = torch.arange(len(users))
    z = {n: ens._z(n, scores[n][users] if scores.get(n) is not None else
                   score_matrix(ens.members[n], users)) for n in kmembers}

    def valid_ndcg(w: tuple) -> float:
        s = sum(c * z[n] for c, n in zip(w, kmembers) if c > 0)
        return ranking_metrics(None, enc, "valid", ks=[10],
                               relevant_min_rating=cfg.eval.relevant_min_rating,
                               chunk=cfg.eval.chunk, max_memory_gb=cfg.eval.max_memory_gb,
                               scores=lambda u: s[row[u]], users=users.numpy())["ndcg@10"]

    best_w, best = search_simplex(kmembers, valid_ndcg, quiet=cfg.quiet)
    ens.ranking_mix = {n: float(c) for c, n in zip(best_w, kmembers)}
    log.info("auto weights: rating %s, ranking %s (valid NDCG@10 %.4f)",
             ens.rating_mix, ens.ranking_mix, best)


def search_simplex(names: list[str], score, quiet: bool = True) -> tuple[tuple, float]:
    """The convex weights with the best ``score``: every point of the simplex grid of step
    0.2 (0.1 for up to three members), then moves of 0.05 of weight from one member to
    another while one improves. Scores are cached per point."""
    k = len(names)
    steps = 10 if k <= 3 else 5
    grid = [tuple(c / steps for c in combo) for combo in product(range(steps + 1), repeat=k)
            if sum(combo) == steps]
    seen: dict[tuple, float] = {}

    def at(w):
        key = tuple(round(x, 6) for x in w)
        if key not in seen:
            seen[key] = score(key)
        return seen[key]

    for w in progress(grid, desc="fit ranking weights", quiet=quiet):
        at(w)
    best_w = max(seen, key=seen.get)
    improved = True
    while improved:
        improved = False
        for i, j in product(range(k), repeat=2):
            if i == j or best_w[j] < 0.05 - 1e-9:
                continue
            w = list(best_w)
            w[i], w[j] = w[i] + 0.05, w[j] - 0.05
            if at(w) > seen[best_w] + 1e-12:
                best_w, improved = tuple(round(x, 6) for x in w), True
    return best_w, seen[best_w]


def weight_users(enc: Encoded, cfg: RunConfig, uncached: list[str]) -> torch.Tensor:
    """The valid users the ranking weights are fitted on: every one while each member's
    scores are cached; else a seeded sample whose members' score rows fit in the memory
    budget together (`pakd.memory.cache_entries`), so no users x items matrix is built."""
    from ..memory import cache_entries
    users = torch.unique(enc.parts["valid"].user)
    if not uncached:
        return users
    most = max(1, cache_entries(cfg.eval.max_memory_gb) // (enc.n_items * (len(uncached) + 2)))
    if len(users) <= most:
        return users
    g = torch.Generator().manual_seed(cfg.seed + 1201)
    log.info("auto weights: fitted on %d of %d valid users (--max-memory-gb %g)", most,
             len(users), cfg.eval.max_memory_gb)
    return torch.sort(users[torch.randperm(len(users), generator=g)[:most]]).values


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
