"""What the teacher tells the student, computed once per run.

- ratings: the teacher's rating prediction for every train rating;
- unobserved: for every train rating, ``unobserved`` items its user did not rate (drawn once,
  seeded) with the teacher's rating of each - where the teacher knows more than the labels;
- scores: the teacher's full users x items ranking scores (from the cached member matrices),
  divided by the temperature at which their softmax best predicts the valid part's items
  (`calibrate_temperature`): the ensemble mixes standardised logits, whose scale says
  nothing about how sure the teacher is, so the scale is fitted to held-out data before
  a student learns the teacher's distribution;
- seen: which items each user rated in train (left out of the distilled distributions);
- probs, neg_entropy: the teacher's softmax at the distillation temperature over each user's
  unseen items, and its sum p log p - fixed, so computed once, not at every step;
- top: per user, the teacher's ``list_top`` best items among those the user did not rate in
  train - the head of every candidate list in listwise distillation;
- features: the teacher's hidden representation of every train rating, reduced by PCA to
  ``feature_dim`` standardised components (the ensemble's hidden concatenates its members'
  and is too wide to store whole).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..csr import csr_mask, csr_take
from ..data.encoding import Encoded
from ..errors import PakdError
from ..models.base import RecModel
from ..runtime import progress


@dataclass
class TeacherSignals:
    ratings: torch.Tensor     # [n_train]
    scores: torch.Tensor      # [n_users, n_items], divided by ``scale``
    seen: torch.Tensor        # [n_users, n_items] bool
    top: torch.Tensor         # [n_users, list_top] item indices
    features: torch.Tensor    # [n_train, feature_dim]
    explained: float          # share of hidden variance the PCA keeps
    scale: float = 1.0        # the calibrated temperature the raw scores were divided by
    probs: torch.Tensor | None = None        # [n_users, n_items], 0 on seen items
    neg_entropy: torch.Tensor | None = None  # [n_users]
    unobs_items: torch.Tensor | None = None   # [n_train, unobserved]
    unobs_ratings: torch.Tensor | None = None  # [n_train, unobserved]
    _csr: tuple | None = field(default=None, repr=False)

    def seen_pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in ``users``, item) of every train item of ``users``."""
        if self._csr is None:          # derived once from ``seen``
            rows, cols = self.seen.nonzero(as_tuple=True)
            indptr = torch.zeros(len(self.seen) + 1, dtype=torch.long)
            indptr[1:] = torch.bincount(rows, minlength=len(self.seen)).cumsum(0)
            self._csr = (indptr, cols)
        return csr_take(*self._csr, users)


def teacher_distribution(scores: torch.Tensor, seen: torch.Tensor, temperature: float):
    """(probs, sum p log p) of softmax(scores / T) over each user's unseen items."""
    lp = torch.log_softmax((scores / temperature).masked_fill(seen, -torch.inf), 1)
    p = lp.exp()
    return p, torch.where(seen, torch.zeros(()), p * lp).sum(1)


@torch.no_grad()
def calibrate_temperature(scores: torch.Tensor, seen: torch.Tensor, enc: Encoded,
                          part: str = "valid") -> float:
    """The temperature tau minimising the mean negative log-likelihood of ``part``'s items
    under softmax(scores / tau) over each user's unseen items (golden-section search on
    log tau in [1e-3, 1e3]; the NLL is convex in 1/tau)."""
    p = enc.parts[part]
    if len(p) == 0:
        return 1.0
    users, inv = torch.unique(p.user, return_inverse=True)
    s = scores[users].double().masked_fill(seen[users], float("-inf"))
    pos = s[inv, p.item]
    ok = torch.isfinite(pos)           # an item seen in train as well cannot be predicted
    inv, pos = inv[ok], pos[ok]

    def nll(log_tau: float) -> float:
        tau = float(np.exp(log_tau))
        return float((torch.logsumexp(s / tau, 1)[inv] - pos / tau).mean())

    a, b = np.log(1e-3), np.log(1e3)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(d)
    return float(np.exp((a + b) / 2))


@torch.no_grad()
def teacher_signals(teacher: RecModel, enc: Encoded, scores: torch.Tensor | None, *,
                    list_top: int, feature_dim: int, quiet: bool = True,
                    batch: int = 1024, calibrate: bool = True,
                    temperature: float = 1.0, unobserved: int = 0,
                    seed: int = 0) -> TeacherSignals:
    if scores is None:
        raise PakdError("distillation needs the teacher's whole users x items score "
                        f"matrix ({enc.n_users:,} x {enc.n_items:,}), which is not cached: "
                        "raise --score-cache-limit above that many entries and "
                        "--max-memory-gb above twice their float32 size")
    teacher.eval()
    tr = enc.parts["train"]
    ratings, hidden = [], []
    with progress(total=len(tr), desc="teacher signals", quiet=quiet, unit="row") as bar:
        for s in range(0, len(tr), batch):
            o = teacher(tr.user[s:s + batch], tr.item[s:s + batch])
            ratings.append(o.rating.float())
            hidden.append(o.hidden.float())
            bar.update(len(o.rating))
    hidden = torch.cat(hidden)
    mean = hidden.mean(0)
    centred = hidden - mean
    k = min(feature_dim, centred.shape[1], centred.shape[0])
    cov = centred.T @ centred / max(1, len(centred) - 1)
    evals, evecs = torch.linalg.eigh(cov.double())
    order = torch.argsort(evals, descending=True)[:k]
    comps = evecs[:, order].float()
    feats = centred @ comps
    feats = feats / feats.std(0).clamp(min=1e-8)
    explained = float(evals[order].sum() / evals.sum().clamp(min=1e-12))
    seen = csr_mask(enc.seen(("train",)), enc.n_items)
    top = torch.topk(scores.masked_fill(seen, -torch.inf), min(list_top, enc.n_items),
                     dim=1).indices
    scale = calibrate_temperature(scores, seen, enc) if calibrate else 1.0
    probs, neg_entropy = teacher_distribution(scores / scale, seen, temperature)
    unobs_items = unobs_ratings = None
    if unobserved:
        from ..train import NegativeSampler
        gen = torch.Generator().manual_seed(seed + 4049)
        unobs_items = NegativeSampler(enc).sample(tr.user, unobserved, gen)
        uu = tr.user.repeat_interleave(unobserved)
        unobs_ratings = torch.cat([teacher.predict(uu[s:s + 8 * batch],
                                                   unobs_items.flatten()[s:s + 8 * batch]).float()
                                   for s in range(0, len(uu), 8 * batch)]).view(len(tr), -1)
    return TeacherSignals(torch.cat(ratings), scores / scale, seen, top, feats, explained,
                          scale, probs, neg_entropy, unobs_items, unobs_ratings)
