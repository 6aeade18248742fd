"""Recipe `teachers`: train the members, evaluate each on the test part.

For each model of ``train.models``: seed by name (a member trains the same alone or after
the others), build it from its config section, `fit` it (best weights and resumable state in
RUN/teachers/), then score the catalogue once - the scores are cached
(`member_scores`), because full-catalogue scoring of xDeepFM and AutoInt is the most
expensive step after training, and the ensemble, Fisher and distillation stages read the
same matrices.
"""
from __future__ import annotations

import time

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from ..config import CLOSED_FORM, TEACHERS, RunConfig, arch_of
from ..data.encoding import Encoded
from ..evaluate import score_matrix
from ..models import build, save
from ..models.base import RecModel
from ..rundir import RunDir
from ..runtime import log, progress, seed_everything
from .. import distributed
from ..train import fit
from .evaluation import evaluate_kept
from .split import load_encoded


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
        seed_everything(cfg.seed * 1000 + TEACHERS.index(name))
        model = build(name, enc.schema, arch_of(section, name), tables=enc.tables,
                      rating_mean=mean)
        log.info("training %s (%s parameters)", name, f"{model.n_params():,}")
        t0 = time.perf_counter()
        cands = (retrieval_candidates(cfg, rd, enc, name, section.retrieval_n)
                 if section.negative_sampling == "retrieval" else None)
        res = fit(model, enc, section, candidates=cands, seed=cfg.seed, name=name,
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


def save_and_evaluate(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str, model: RecModel,
                      meta: dict) -> dict:
    """Save a freshly trained member, score its catalogue anew (the cache is stale), keep its
    test and valid metrics (per user too) in ``meta`` and save again; returns the test ones."""
    save(model, rd.member(name), meta=meta)
    rd.member_scores(name).unlink(missing_ok=True)
    got = evaluate_kept(cfg, rd, enc, model, name,
                        scores=member_scores(cfg, rd, name, model, enc), quiet=cfg.quiet)
    meta["test"], meta["valid"] = got["test"], got["valid"]
    save(model, rd.member(name), meta=meta)
    return meta["test"]


def check_settings(cfg: RunConfig, enc: Encoded) -> None:
    """Settings that depend on the data, checked before any training."""
    check_catalogue_settings(cfg, enc.n_items, enc.n_users)


def matrix_held(cfg: RunConfig, n_users: int, n_items: int) -> bool:
    """Whether a users x items score matrix is held whole (cached) under the settings:
    ``ensemble.cache_limit`` entries and the memory budget (`pakd.memory.cache_entries`)."""
    from ..memory import cache_entries
    return n_users * n_items <= min(cfg.ensemble.cache_limit,
                                    cache_entries(cfg.eval.max_memory_gb))


def check_catalogue_settings(cfg: RunConfig, n_items: int, n_users: int | None = None) -> None:
    """Settings that depend on the catalogue size: the CLI checks them from the split's
    summary before it writes run.yaml, the recipe again before training."""
    from ..errors import PakdError
    from ..memory import user_chunk
    from ..models.ease import check_catalogue
    if (n_users is not None and cfg.distill.kd_list == "candidates"
            and not matrix_held(cfg, n_users, n_items)):
        raise PakdError(f"--kd-list candidates needs the teacher's whole {n_users:,} x "
                        f"{n_items:,} score matrix, which is over the memory budget: use "
                        "--kd-list catalogue (it keeps each user's --catalogue-head likeliest "
                        "items), or raise --max-memory-gb and --score-cache-limit")
    big = [n for n in cfg.ensemble.rerank_n if n > n_items]
    if big:
        raise PakdError(f"--rerank-n {','.join(map(str, big))}: more candidates than the "
                        f"catalogue's {n_items} items; give counts up to {n_items}")
    if "ease" in cfg.train.models:
        check_catalogue(n_items, cfg.ease.max_items)
    user_chunk(n_items, cfg.eval.max_memory_gb)    # a budget too small for one user stops here


def retrieval_candidates(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str,
                         n: int) -> torch.Tensor:
    """[users, n]: the retrieval stage's top-n items per user among those not rated in
    train - the hard negatives of a member trained with negative_sampling retrieval."""
    from ..errors import PakdError
    from ..rerank import candidates
    ret = cfg.ensemble.retrieval
    if ret == name or not rd.has_member(ret):
        raise PakdError(f"{name}: negative_sampling retrieval draws from the --retrieval "
                        f"member {ret}, which is not trained in {rd} yet: list {ret} before "
                        f"{name} in --models, or use --{name}-negative-sampling popularity")
    model, _ = rd.load_member(ret)
    scores = member_scores(cfg, rd, ret, model, enc)
    exclude = enc.seen(("train",))
    if scores is not None:
        return candidates(scores, exclude, min(n, enc.n_items))
    # a catalogue too large to cache: by chunks, into one preallocated result (per-chunk
    # pieces kept alive between freed score blocks fragment the heap: `topk_metrics`)
    n = min(n, enc.n_items)
    out = torch.empty(enc.n_users, n, dtype=torch.long)
    for s in range(0, enc.n_users, 256):
        users = torch.arange(s, min(s + 256, enc.n_users))
        with torch.inference_mode():
            chunk = model.score_all(users)
        out[s:s + len(users)] = candidates(chunk, exclude[s:s + len(users)], n)
    return out


def _train_matrix(enc: Encoded):
    X = enc.seen(("train",)).astype("float64")
    X.data[:] = 1.0
    return X


def _closed_form(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str, model: RecModel,
                 grid: list, fit_one, label: str) -> dict:
    """Fit ``model`` for each value of ``grid`` (``fit_one(value)`` sets its weights); keep the
    one with the best valid NDCG@10 (the valid part chooses, the test part only reports)."""
    from ..evaluate import ranking_metrics
    t0 = time.perf_counter()
    history, best = [], None
    for value in progress(grid, desc=f"{name} {label}s", quiet=cfg.quiet):
        t1 = time.perf_counter()
        with torch.no_grad():
            fit_one(value)
        nd = ranking_metrics(model, enc, "valid", ks=[10], chunk=cfg.eval.chunk,
                             relevant_min_rating=cfg.eval.relevant_min_rating)["ndcg@10"]
        history.append({label: value, "valid_ndcg@10": nd, "seconds": time.perf_counter() - t1})
        log.info("%s %s %g: valid NDCG@10 %.4f (%.1fs)", name, label, value, nd,
                 history[-1]["seconds"])
        if best is None or nd > best[0]:
            best = (nd, value, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    setattr(model, label, best[1])
    spent = time.perf_counter() - t0
    meta = {"fit": {"train_seconds": spent, "fit_seconds": spent, "epoch_seconds": 0.0,
                    "best_epoch": 0, "best_epochs": {}, "epochs_run": 0,
                    "best_valid_ndcg@10": best[0], label: best[1],
                    "threads": torch.get_num_threads(), "history": history},
            "train_config": getattr(cfg, name).model_dump()}
    m = save_and_evaluate(cfg, rd, enc, name, model, meta)
    log.info("%s (%s %g): test NDCG@10 %.4f, Recall@10 %.4f", name, label, best[1],
             m["ndcg@10"], m["recall@10"])
    return meta


def fit_ease(cfg: RunConfig, rd: RunDir, enc: Encoded, mean: float) -> dict:
    """EASE in closed form for each of ``ease.lambdas``."""
    from ..models.ease import ease_weights
    X = _train_matrix(enc)                 # the catalogue was checked by check_settings
    model = build("ease", enc.schema, {"history": X.nnz}, rating_mean=mean)
    model.set_history(X.indptr, X.indices)
    return _closed_form(cfg, rd, enc, "ease", model, cfg.ease.lambdas,
                        lambda lam: model.weight.copy_(ease_weights(X, lam)), "lam")


def fit_als(cfg: RunConfig, rd: RunDir, enc: Encoded, mean: float) -> dict:
    """Implicit ALS for each of ``als.regs`` (seeded initialisation)."""
    from ..models.als import ials
    X = _train_matrix(enc)
    a = cfg.als
    model = build("als", enc.schema, {"factors": a.factors, "alpha": a.alpha}, rating_mean=mean)

    def fit_one(reg):
        u, v = ials(X, a.factors, reg, a.alpha, a.iterations, seed=cfg.seed)
        model.user_factors.copy_(u)
        model.item_factors.copy_(v)
    return _closed_form(cfg, rd, enc, "als", model, a.regs, fit_one, "reg")


def member_scores(cfg: RunConfig, rd: RunDir, name: str, model: RecModel,
                  enc: Encoded) -> torch.Tensor | None:
    """The member's users x items ranking scores, from the cache when its weights are
    unchanged. None when the matrix is larger than ``ensemble.cache_limit`` entries or than
    the memory budget allows (`pakd.memory.cache_entries`); callers then score users in
    chunks."""
    if not matrix_held(cfg, enc.n_users, enc.n_items):
        return None
    path = rd.member_scores(name)
    fp = rd.member_fingerprint(name)
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("weights_md5") == fp:
                return f.get_tensor("scores")
    t0 = time.perf_counter()
    with progress(total=enc.n_users, desc=f"score catalogue ({name})", quiet=cfg.quiet,
                  unit="user") as bar, torch.inference_mode():
        s = score_matrix(model, enc.n_users, progress=bar)
    log.info("%s: scored %d users x %d items in %.1fs", name, enc.n_users, enc.n_items,
             time.perf_counter() - t0)
    if distributed.is_main():         # under torchrun every rank scores; rank 0 writes
        rd.write_bytes(path, st_save({"scores": s.contiguous()}, metadata={"weights_md5": fp}))
    return s
