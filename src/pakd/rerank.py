"""Retrieve, then re-rank - how feature-interaction models are used in production.

A cheap retrieval stage (a dot-product ranker: the SVD member's ranking factors, or EASE)
proposes each user's top-N items among those the user has not seen; a re-ranker (xDeepFM,
AutoInt, the ensemble) orders those N; every other item keeps the retrieval order below
them. `compose` writes the composed system as one users x items score matrix, so every
full-catalogue metric of it is exact.
"""
from __future__ import annotations

import numpy as np
import torch

from .csr import csr_mask
from .errors import PakdError
from .runtime import log


def candidates(retrieval: torch.Tensor, exclude, n: int) -> torch.Tensor:
    """[users, n] the retrieval stage's top-n items per user, ``exclude`` (CSR of seen
    items) left out."""
    if n <= 0 or n > retrieval.shape[1]:
        raise PakdError(f"--rerank-n must be between 1 and the catalogue size "
                        f"({retrieval.shape[1]}), got {n}")
    masked = retrieval.masked_fill(csr_mask(exclude, retrieval.shape[1]), -torch.inf)
    return torch.topk(masked, min(n, masked.shape[1]), dim=1).indices


def compose(retrieval: torch.Tensor, reranker: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """Scores of the composed system: the candidates ordered by ``reranker`` above every
    other item, which keep their ``retrieval`` scores (hence order)."""
    out = retrieval.double()          # float64: the offset must not swallow small gaps
    finite = torch.where(torch.isfinite(out), out, torch.zeros((), dtype=out.dtype))
    top = finite.max(1, keepdim=True).values
    r = reranker.gather(1, cands).double()
    r = r - r.min(1, keepdim=True).values            # >= 0
    out.scatter_(1, cands, top + 1.0 + r)
    return out


# weights of the re-ranker's standardised score next to the retrieval's in `with_retrieval`,
# the one with the best valid NDCG@10 kept (0 is left out: that is the retrieval alone)
BLEND_GRID = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def with_retrieval(retrieval: torch.Tensor, reranker: torch.Tensor, cands: torch.Tensor,
                   alpha: float) -> torch.Tensor:
    """A re-ranker that takes the retrieval score as an input, as production re-rankers
    do: each user's candidates scored by z(retrieval) + alpha * z(reranker), z standardising
    over the user's N candidates (one candidate, or equal scores: z = 0) - as a users x
    items matrix for `compose` (0 elsewhere)."""
    def z(s):
        v = s.gather(1, cands).double()
        sd = v.std(1, keepdim=True, unbiased=False).clamp(min=1e-12)
        return (v - v.mean(1, keepdim=True)) / sd
    out = torch.zeros(retrieval.shape, dtype=torch.float64)
    out.scatter_(1, cands, z(retrieval) + alpha * z(reranker))
    return out


class _Judge:
    """Test metrics of composed score matrices against the retrieval stage alone (paired
    bootstrap over users, the retrieval's resample drawn once), and valid NDCG@10 for
    choosing a blend weight."""

    def __init__(self, cfg, enc, retrieval: torch.Tensor):
        from .stats import bootstrap
        self.enc = enc
        self.kw = dict(ks=[10], relevant_min_rating=cfg.eval.relevant_min_rating,
                       chunk=cfg.eval.chunk, per_user=True)
        self.boot = dict(metrics=("recall@10", "ndcg@10"), seed=cfg.seed)
        self.alone, alone_pu = self.measured(retrieval)
        self.alone_boot = bootstrap(alone_pu, **self.boot)

    def measured(self, s) -> tuple[dict, dict]:
        from .evaluate import ranking_metrics
        m = ranking_metrics(None, self.enc, "test", scores=s, **self.kw)
        ranks = m.pop("per_user")
        users = np.unique(self.enc.parts["test"].user.numpy())
        return m, {"users": users, "rank_users": ranks.pop("users"), **ranks}

    def valid_ndcg(self, s) -> float:
        from .evaluate import ranking_metrics
        return ranking_metrics(None, self.enc, "valid", scores=s,
                               **{**self.kw, "per_user": False})["ndcg@10"]

    def against_retrieval(self, s) -> dict:
        """Test NDCG@10 and Recall@10 of the composed scores ``s``, with the paired
        difference from the retrieval stage alone."""
        from .stats import bootstrap, paired_of
        m, pu = self.measured(s)
        return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"],
                "vs_retrieval": paired_of(self.alone_boot, bootstrap(pu, **self.boot))}


def rerank_table(cfg, enc, ens, scores: dict, full: torch.Tensor | None) -> dict | None:
    """Each member (and the ensemble) as a re-ranker of the retrieval stage's top-N unseen
    items, for each N of ``ensemble.rerank_n``: test NDCG@10 and Recall@10 of the composed
    system (exact full-catalogue metrics) and its paired difference from the retrieval stage
    alone (95% bootstrap interval over users). Each member also re-ranks with the retrieval
    score as an input (``<member> + <retrieval>``, `with_retrieval`), its weight chosen on
    the valid part for each N. None without a cached retrieval member or ``rerank_n``."""
    ret = cfg.ensemble.retrieval
    if ret not in ens.members or scores.get(ret) is None or not cfg.ensemble.rerank_n:
        return None
    judge = _Judge(cfg, enc, scores[ret])
    rerankers = {n: scores[n] for n in ens.members if n != ret and scores.get(n) is not None}
    if full is not None:                 # the ensemble's own scores
        rerankers["ensemble"] = full
    from .evaluate import exclusion_parts
    seen = {p: enc.seen(exclusion_parts(p)) for p in ("test", "valid")}
    table = {str(n): _rerank_row(cfg, seen, judge, scores[ret], rerankers, n)
             for n in cfg.ensemble.rerank_n}
    log.info("re-ranking %s's top-N: %s", ret, {n: {k: round(v["ndcg@10"], 4)
                                                   for k, v in row.items()}
                                               for n, row in table.items()})
    return {"retrieval": ret, "retrieval_alone": {"ndcg@10": judge.alone["ndcg@10"],
                                                  "recall@10": judge.alone["recall@10"]},
            "by_n": table}


def _rerank_row(cfg, seen: dict, judge: _Judge, ret: torch.Tensor, rerankers: dict,
                n_cand: int) -> dict:
    """One N of the table: every re-ranker alone, then each member blended with the
    retrieval score at the weight of `BLEND_GRID` with the best valid NDCG@10 (``seen``:
    the items each part's ranking leaves out)."""
    from .train.select import best_on_grid
    cands = candidates(ret, seen["test"], n_cand)
    cands_valid = candidates(ret, seen["valid"], n_cand)
    row = {name: judge.against_retrieval(compose(ret, s, cands))
           for name, s in rerankers.items()}
    for name, s in rerankers.items():
        if name == "ensemble":        # it holds the retrieval member already
            continue
        alpha = best_on_grid(BLEND_GRID, lambda a: judge.valid_ndcg(compose(
            ret, with_retrieval(ret, s, cands_valid, a), cands_valid))).value
        row[f"{name} + {cfg.ensemble.retrieval}"] = {**judge.against_retrieval(compose(
            ret, with_retrieval(ret, s, cands, alpha), cands)), "weight": alpha}
    return row
