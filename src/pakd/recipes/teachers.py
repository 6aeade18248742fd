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
from ..models import build_on, save
from ..models.base import RecModel
from ..rundir import RunDir
from ..runtime import log, seed_everything
from ..scores import check_catalogue_settings, member_scores, retrieval_candidates
from ..train import fit
from ..train.closed_form import fit_closed_form
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
                model, meta = fit_closed_form(name, cfg, enc, mean)
                m = save_and_evaluate(cfg, rd, enc, name, model, meta)
                log.info("%s (%s): test RMSE %.4f, NDCG@10 %.4f, Recall@10 %.4f", name,
                         ", ".join(f"{k} {v:g}" for k, v in meta["chosen"].items()),
                         m["rmse"], m["ndcg@10"], m["recall@10"])
                out[name] = meta
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
