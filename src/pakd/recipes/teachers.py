"""Recipe `teachers`: train the members, evaluate each on the test part.

For each model of ``train.models``: seed by name (a member trains the same alone or after
the others), build it from its config section, `fit` it (best weights and resumable state in
RUN/teachers/), then score the catalogue once - the scores are cached
(`pakd.scores.member_scores`): the ensemble, Fisher and distillation stages read the same
matrices.
"""
from __future__ import annotations

import time

import torch

from .. import distributed
from ..config import CLOSED_FORM, TRAINED, RunConfig, arch_of
from ..data import load_encoded
from ..data.encoding import Encoded
from ..evaluate import evaluate_kept
from ..models import build, build_on, save
from ..models.base import RecModel
from ..rundir import RunDir
from ..runtime import log, seed_everything
from ..scores import check_catalogue_settings, member_scores, retrieval_candidates
from ..train import fit
from ..train.sequence import fit_sequence


EVERY_RANK = True     # under torchrun every process trains (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> dict[str, dict]:
    """Train every model in ``cfg.train.models``; returns their saved metadata."""
    enc = enc or load_encoded(cfg, rd)
    check_settings(cfg, enc)
    mean = float(enc.parts["train"].rating.mean())
    out = {}
    main = distributed.is_main()       # under torchrun: every rank trains, rank 0 writes
    for name in cfg.train.models:
        if name in CLOSED_FORM:
            if main:
                out[name] = (fit_ease if name == "ease" else fit_als)(cfg, rd, enc, mean)
            distributed.barrier()
            continue
        section = getattr(cfg, name)
        seed_everything(cfg.seed * 1000 + TRAINED.index(name))
        model = build_on(name, enc, arch_of(section, name), rating_mean=mean)
        log.info("training %s (%s parameters)", name, f"{model.n_params():,}")
        t0 = time.perf_counter()
        cands = (retrieval_candidates(cfg, rd, enc, name, section.retrieval_n)
                 if getattr(section, "negative_sampling", None) == "retrieval" else None)
        trainer = fit_sequence if name in SEQUENCE else fit
        res = trainer(model, enc, section, candidates=cands, seed=cfg.seed, name=name,
                  checkpoint=rd.member(name), state=rd.member_state(name),
                  resume=cfg.resume, quiet=cfg.quiet,
                  relevant_min_rating=cfg.eval.relevant_min_rating)
        meta = {"fit": {"train_seconds": res.train_seconds,
                        "fit_seconds": time.perf_counter() - t0,
                        "epoch_seconds": res.epoch_seconds, "best_epoch": res.best_epoch,
                        "best_epochs": res.best_epochs, "epochs_run": res.epochs_run,
                        "best_valid": res.best_valid, "threads": torch.get_num_threads(),
                        "history": res.history},
                "train_config": section.model_dump()}
        if main:
            m = save_and_evaluate(cfg, rd, enc, name, model, meta)
            log.info("%s: test RMSE %.4f, AUC %.4f, NDCG@10 %.4f, Recall@10 %.4f (%.0fs "
                     "training)", name, m["rmse"], m["auc"], m["ndcg@10"], m["recall@10"],
                     res.train_seconds)
        distributed.barrier()          # the next member may read this one's files
        out[name] = meta
    return out


# members trained on their users' sequences (`pakd.train.sequence`), not on rated pairs
SEQUENCE = ("sasrec",)


def save_and_evaluate(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str, model: RecModel,
                      meta: dict) -> dict:
    """Save a freshly trained member, score its catalogue anew (the cache is stale), keep its
    test and valid metrics (per user too) in ``meta`` and save again; returns the test ones."""
    save(model, rd.member(name), meta=meta)
    rd.member_scores(name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    scores = member_scores(cfg, rd, name, model, enc)
    # its cost beside training: the catalogue scores (None: not held, scored in chunks)
    meta["fit"]["score_seconds"] = time.perf_counter() - t0 if scores is not None else None
    got = evaluate_kept(cfg, rd, enc, model, name, scores=scores, quiet=cfg.quiet)
    meta["test"], meta["valid"] = got["test"], got["valid"]
    save(model, rd.member(name), meta=meta)
    return meta["test"]


def check_settings(cfg: RunConfig, enc: Encoded) -> None:
    """Settings that depend on the data, checked before any training."""
    check_catalogue_settings(cfg, enc.n_items, enc.n_users)


def _train_matrix(enc: Encoded):
    X = enc.seen(("train",)).astype("float64")
    X.data[:] = 1.0
    return X


def _closed_form(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str, model: RecModel,
                 grid: list, fit_one, label: str) -> dict:
    """Fit ``model`` for each value of ``grid`` (``fit_one(value)``); keep the one with the
    best valid NDCG@10 (`pakd.train.select.best_on_grid`: the test part only reports)."""
    from ..evaluate import ranking_metrics
    from ..train.select import best_on_grid, note_edge

    def valid_ndcg(value) -> float:
        fit_one(value)
        return ranking_metrics(model, enc, "valid", ks=[10], chunk=cfg.eval.chunk,
                               relevant_min_rating=cfg.eval.relevant_min_rating)["ndcg@10"]

    t0 = time.perf_counter()
    best = best_on_grid(grid, valid_ndcg, label=label, desc=f"{name} {label}s", name=name,
                        quiet=cfg.quiet, keep=lambda: {k: v.detach().clone()
                                                       for k, v in model.state_dict().items()})
    model.load_state_dict(best.kept)
    setattr(model, label, best.value)
    edge = note_edge(name, label, best.value, grid)
    spent = time.perf_counter() - t0
    meta = {"fit": {"train_seconds": spent, "fit_seconds": spent, "epoch_seconds": 0.0,
                    "best_epoch": 0, "best_epochs": {}, "epochs_run": 0,
                    "best_valid_ndcg@10": best.score, label: best.value, "at_edge": edge,
                    "threads": torch.get_num_threads(), "history": best.history},
            "train_config": getattr(cfg, name).model_dump()}
    m = save_and_evaluate(cfg, rd, enc, name, model, meta)
    log.info("%s (%s %g): test NDCG@10 %.4f, Recall@10 %.4f", name, label, best.value,
             m["ndcg@10"], m["recall@10"])
    return meta


def fit_ease(cfg: RunConfig, rd: RunDir, enc: Encoded, mean: float) -> dict:
    """EASE in closed form for each of ``ease.lambdas``."""
    X = _train_matrix(enc)                 # the catalogue was checked by check_settings
    model = build("ease", enc.schema, {"history": X.nnz}, rating_mean=mean)
    return _closed_form(cfg, rd, enc, "ease", model, cfg.ease.lambdas,
                        lambda lam: model.fit(X, lam), "lam")


def fit_als(cfg: RunConfig, rd: RunDir, enc: Encoded, mean: float) -> dict:
    """Implicit ALS for each of ``als.regs`` (seeded initialisation)."""
    X = _train_matrix(enc)
    a = cfg.als
    model = build("als", enc.schema, {"factors": a.factors, "alpha": a.alpha}, rating_mean=mean)
    return _closed_form(cfg, rd, enc, "als", model, a.regs,
                        lambda reg: model.fit(X, reg, a.iterations, seed=cfg.seed), "reg")
