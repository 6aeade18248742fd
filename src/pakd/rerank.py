"""Retrieve, then re-rank - how feature-interaction models are used in production.

A cheap retrieval stage (a dot-product ranker: the SVD member's ranking factors, or EASE)
proposes each user's top-N items among those the user has not seen; a re-ranker (xDeepFM,
AutoInt, the ensemble) orders those N; every other item keeps the retrieval order below
them. `compose` writes the composed system as one users x items score matrix, so every
full-catalogue metric of it is exact.
"""
from __future__ import annotations

import torch

from .csr import csr_mask
from .errors import PakdError


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
