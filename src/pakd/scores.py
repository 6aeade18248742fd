"""The teachers' users x items score matrices: computed once per member and cached in the
run directory (full-catalogue scoring of xDeepFM and AutoInt is the most expensive step
after training), then read by the ensemble, Fisher and distillation stages; and the
settings that depend on the catalogue's size, checked before any work.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from . import distributed
from .data.encoding import Encoded
from .errors import PakdError
from .evaluate import score_matrix
from .models.base import RecModel
from .runtime import log, progress

if TYPE_CHECKING:
    from .config import RunConfig
    from .models.ensemble import Ensemble
    from .rundir import RunDir


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


def matrix_held(cfg: RunConfig, n_users: int, n_items: int) -> bool:
    """Whether a users x items score matrix is held whole (cached) under the settings:
    ``ensemble.cache_limit`` entries and the memory budget (`pakd.memory.cache_entries`)."""
    from .memory import cache_entries
    return n_users * n_items <= min(cfg.ensemble.cache_limit,
                                    cache_entries(cfg.eval.max_memory_gb))


def ensemble_scores(ens: Ensemble, scores: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
    """The ensemble's users x items ranking scores from its members' (None if one is not
    cached)."""
    if any(scores.get(n) is None for n in ens.ranking_mix):
        return None
    users = torch.arange(next(scores[n] for n in ens.ranking_mix).shape[0])
    return ens.combine_scores({n: scores[n] for n in ens.ranking_mix}, users)


def teacher_scores(cfg, rd, enc: Encoded):
    """(the distillation teacher, its users x items ranking scores - None when the matrix is
    not held)."""
    name = cfg.distill.teacher
    teacher = rd.load_teacher(name)
    if name == "ensemble":
        return teacher, ensemble_scores(teacher, {
            n: member_scores(cfg, rd, n, teacher.members[n], enc) for n in teacher.ranking_mix})
    return teacher, member_scores(cfg, rd, name, teacher, enc)


def check_catalogue_settings(cfg: RunConfig, n_items: int, n_users: int | None = None) -> None:
    """Settings that depend on the catalogue size: the CLI checks them from the split's
    summary before it writes run.yaml, the recipe again before training."""
    from .memory import user_chunk
    from .models.ease import check_catalogue
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
    if "knn" in cfg.train.models:
        check_catalogue(n_items, cfg.knn.max_items, "knn")
    if "knn_interp" in cfg.train.models:
        check_catalogue(n_items, cfg.knn_interp.max_items, "knn_interp")
    if "uknn" in cfg.train.models and n_users is not None:
        check_catalogue(n_users, cfg.uknn.max_users, "uknn", side="users")
    user_chunk(n_items, cfg.eval.max_memory_gb)    # a budget too small for one user stops here


def retrieval_candidates(cfg: RunConfig, rd: RunDir, enc: Encoded, name: str,
                         n: int) -> torch.Tensor:
    """[users, n]: the retrieval stage's top-n items per user among those not rated in
    train - the hard negatives of a member trained with negative_sampling retrieval."""
    from .rerank import candidates
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


def fit_standardisation(ens: Ensemble, enc: Encoded, cfg: RunConfig,
                        scores: dict[str, torch.Tensor | None]) -> None:
    """Each ranking member's z-scoring: per user over their unseen items, or per catalogue
    over ``ensemble.calibration_users`` users (`Ensemble.standardise`)."""
    if ens.standardise == "user":
        from .memory import user_chunk
        ens.calibrate_users(enc.seen(("train",)), scores,
                            chunk=min(1024, user_chunk(enc.n_items, cfg.eval.max_memory_gb)))
    else:
        ens.calibrate(enc.n_users, cfg.ensemble.calibration_users, cfg.seed, scores=scores)


def fit_auto_weights(ens: Ensemble, enc: Encoded, cfg: RunConfig,
                     scores: dict[str, torch.Tensor | None],
                     users: torch.Tensor | None = None) -> None:
    """``weights: auto``: the ensemble's rating mix by least squares on the valid ratings,
    its ranking mix by the valid items' likelihood or the best valid NDCG@10
    (``ensemble.mix_fit``; `Ensemble.fit_rating_mix`, `Ensemble.fit_ranking_likelihood`,
    `Ensemble.fit_ranking_mix`), from the cached score rows of the `weight_users` (or of
    the given valid ``users``)."""
    from .evaluate import predict_ratings, ranking_metrics, relevant_matrix
    va = enc.parts["valid"]
    ens.fit_rating_mix({n: predict_ratings(ens.members[n], va.user, va.item)
                        for n in ens.rating_mix}, va.rating, offset=cfg.ensemble.rating_offset)
    names = list(ens.ranking_mix)
    if len(names) == 1:
        return
    if users is None:
        users = weight_users(enc, cfg, [n for n in names if scores.get(n) is None])
    row = torch.full((enc.n_users,), -1, dtype=torch.long)
    row[users] = torch.arange(len(users))
    logits = {n: scores[n][users] if scores.get(n) is not None else
              score_matrix(ens.members[n], users) for n in names}
    if cfg.ensemble.mix_fit == "likelihood":
        held = relevant_matrix(enc, "valid", cfg.eval.relevant_min_rating)[users.numpy()].tocoo()
        seen = torch.from_numpy(enc.seen(("train",))[users.numpy()].toarray())
        got = ens.fit_ranking_likelihood(
            logits, users, seen, (torch.from_numpy(held.row).long(),
                                  torch.from_numpy(held.col).long()))
        log.info("auto weights: rating %s, ranking %s (valid items' mean log-likelihood "
                 "%.4f)", ens.rating_mix, ens.ranking_mix, got)
        return

    def valid_ndcg(s: torch.Tensor) -> float:
        return ranking_metrics(None, enc, "valid", ks=[10],
                               relevant_min_rating=cfg.eval.relevant_min_rating,
                               chunk=cfg.eval.chunk, max_memory_gb=cfg.eval.max_memory_gb,
                               scores=lambda u: s[row[u]], users=users.numpy())["ndcg@10"]

    best = ens.fit_ranking_mix(logits, users, valid_ndcg, quiet=cfg.quiet)
    log.info("auto weights: rating %s, ranking %s (valid NDCG@10 %.4f)",
             ens.rating_mix, ens.ranking_mix, best)


def weight_users(enc: Encoded, cfg: RunConfig, uncached: list[str]) -> torch.Tensor:
    """The valid users the ranking weights are fitted on: every one while each member's
    scores are cached; else a seeded sample whose members' score rows fit in the memory
    budget together (`pakd.memory.cache_entries`), so no users x items matrix is built."""
    from .memory import cache_entries
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
