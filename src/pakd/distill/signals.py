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
- head (a catalogue whose users x items teacher matrix is not held, `head_distribution`):
  instead of ``probs``, each user's ``head`` most probable unseen items with their
  probabilities, the rest of the mass spread evenly over the user's other unseen items -
  computed from the teacher's scores user chunk by user chunk, so distillation never holds
  a users x items matrix (benchmarks/catalogue_head.py measures the loss's error);
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

from ..csr import CsrRows, csr_mask, csr_take
from ..data.encoding import Encoded
from ..errors import PakdError
from ..memory import user_chunk
from ..models.base import RecModel
from ..runtime import progress


# users whose valid items fit the temperature when the teacher's rows are scored in chunks:
# a seeded sample of at most this many, and of no more than CALIBRATION_CELLS user x item
# cells (each held in float64 while the temperature is searched)
CALIBRATION_USERS, CALIBRATION_CELLS = 4096, 2**27


@dataclass
class TeacherSignals:
    ratings: torch.Tensor     # [n_train]
    scores: torch.Tensor | None   # [n_users, n_items], divided by ``scale`` (None: ``head``)
    seen: torch.Tensor | CsrRows  # [n_users, n_items] bool (dense, or sparse rows)
    top: torch.Tensor         # [n_users, list_top] item indices
    features: torch.Tensor    # [n_train, feature_dim]
    explained: float          # share of hidden variance the PCA keeps
    scale: float = 1.0        # the calibrated temperature the raw scores were divided by
    probs: torch.Tensor | None = None        # [n_users, n_items], 0 on seen items
    neg_entropy: torch.Tensor | None = None  # [n_users]
    unobs_items: torch.Tensor | None = None   # [n_train, unobserved]
    unobs_ratings: torch.Tensor | None = None  # [n_train, unobserved]
    head: tuple | None = None  # (items int32, unseen bool [n_users, M], tail_each [n_users])
    temperature: float = 1.0   # the distillation temperature ``probs`` were computed at
    _csr: tuple | None = field(default=None, repr=False)

    def seen_pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in ``users``, item) of every train item of ``users``."""
        if isinstance(self.seen, CsrRows):
            return self.seen.pairs(users)
        if self._csr is None:          # derived once from ``seen``
            rows, cols = self.seen.nonzero(as_tuple=True)
            indptr = torch.zeros(len(self.seen) + 1, dtype=torch.long)
            indptr[1:] = torch.bincount(rows, minlength=len(self.seen)).cumsum(0)
            self._csr = (indptr, cols)
        return csr_take(*self._csr, users)

    def catalogue_target(self, users: torch.Tensor) -> dict:
        """The teacher's side of `pakd.distill.losses.catalogue_terms` for ``users``."""
        out = {"teacher_probs": self.probs[users], "teacher_neg_entropy": self.neg_entropy[users]}
        if self.head is not None:
            items, unseen, tail = self.head
            out["head"] = (items[users].long(), unseen[users], tail[users])
        return out


def teacher_distribution(scores: torch.Tensor, seen: torch.Tensor, temperature: float):
    """(probs, sum p log p) of softmax(scores / T) over each user's unseen items."""
    lp = torch.log_softmax((scores / temperature).masked_fill(seen, -torch.inf), 1)
    p = lp.exp()
    return p, torch.where(seen, torch.zeros(()), p * lp).sum(1)


def head_distribution(scores: torch.Tensor, seen: torch.Tensor, temperature: float, m: int):
    """softmax(scores / T) over each user's unseen items, kept as its ``m`` most probable
    items with the rest of the mass spread evenly over the user's other unseen items:
    (items [users, m], probs [users, m], unseen [users, m] (False where a user has fewer
    than m unseen items and the slot holds a seen one, probability 0), tail_each [users]
    (the probability of each other unseen item), sum q log q of that distribution q)."""
    lp = torch.log_softmax((scores / temperature).masked_fill(seen, -torch.inf), 1)
    lv, items = torch.topk(lp, min(m, lp.shape[1]), dim=1)
    unseen = torch.isfinite(lv)
    p = torch.where(unseen, lv.exp(), torch.zeros(()))
    tail = (1.0 - p.sum(1)).clamp(min=0.0)
    n_tail = (~seen).sum(1) - unseen.sum(1)
    tail_each = torch.where(n_tail > 0, tail / n_tail.clamp(min=1), torch.zeros(()))
    neg_entropy = torch.where(unseen, p * lv, torch.zeros(())).sum(1) + torch.where(
        tail_each > 0, tail * torch.log(tail_each.clamp(min=1e-45)), torch.zeros(()))
    return items, p, unseen, tail_each, neg_entropy


@torch.no_grad()
def calibrate_temperature(scores, seen, enc: Encoded, part: str = "valid",
                          max_users: int | None = None, seed: int = 0) -> float:
    """The temperature tau minimising the mean negative log-likelihood of ``part``'s items
    under softmax(scores / tau) over each user's unseen items (golden-section search on
    log tau in [1e-3, 1e3], to 1e-5; the NLL is convex in 1/tau). ``scores``: a users x
    items matrix or a function of user indices giving their rows; ``max_users``: fit on a
    seeded sample of that many of ``part``'s users when there are more."""
    p = enc.parts[part]
    if len(p) == 0:
        return 1.0
    users = torch.unique(p.user)
    if max_users is not None and len(users) > max_users:
        gen = torch.Generator().manual_seed(seed + 7919)
        users = torch.sort(users[torch.randperm(len(users), generator=gen)[:max_users]]).values
        keep = torch.isin(p.user, users)
        pu, pi = p.user[keep], p.item[keep]
    else:
        pu, pi = p.user, p.item
    inv = torch.searchsorted(users, pu)
    rows = scores(users) if callable(scores) else scores[users]
    s = rows.double().masked_fill(seen[users], float("-inf"))
    del rows
    pos = s[inv, pi]
    ok = torch.isfinite(pos)           # an item seen in train as well cannot be predicted
    inv, pos = inv[ok], pos[ok]

    def nll(log_tau: float) -> float:
        tau = float(np.exp(log_tau))
        return float((torch.logsumexp(s / tau, 1)[inv] - pos / tau).mean())

    a, b = np.log(1e-3), np.log(1e3)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > 1e-5:       # tau to 1e-5 relative: 30 steps (each a pass over the rows)
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
                    seed: int = 0, head: int = 1024, chunk: int = 256) -> TeacherSignals:
    """The teacher's signals (module docstring). ``scores`` None: the teacher's users x
    items matrix is not held (too large for the memory budget), so the teacher scores
    ``chunk`` users at a time and the catalogue distribution keeps each user's ``head``
    most probable items (`head_distribution`)."""
    if scores is None and head < 1:
        raise PakdError(f"--catalogue-head must be at least 1, got {head}")
    teacher.eval()
    tr = enc.parts["train"]
    ratings, feats, explained = _rated_features(teacher, tr, feature_dim, batch, quiet)
    if scores is not None:
        seen = csr_mask(enc.seen(("train",)), enc.n_items)
        top = torch.topk(scores.masked_fill(seen, -torch.inf), min(list_top, enc.n_items),
                         dim=1).indices
        scale = calibrate_temperature(scores, seen, enc) if calibrate else 1.0
        probs, neg_entropy = teacher_distribution(scores / scale, seen, temperature)
        scores, head_parts = scores / scale, None
    else:
        seen = CsrRows(enc.seen(("train",)))
        top, probs, neg_entropy, scale, head_parts = _by_chunks(
            teacher, enc, seen, list_top=list_top, temperature=temperature,
            calibrate=calibrate, head=head, chunk=chunk, seed=seed, quiet=quiet)
    unobs_items = unobs_ratings = None
    if unobserved:
        from ..train import NegativeSampler
        gen = torch.Generator().manual_seed(seed + 4049)
        unobs_items = NegativeSampler(enc).sample(tr.user, unobserved, gen)
        uu = tr.user.repeat_interleave(unobserved)
        unobs_ratings = torch.cat([teacher.predict(uu[s:s + 8 * batch],
                                                   unobs_items.flatten()[s:s + 8 * batch]).float()
                                   for s in range(0, len(uu), 8 * batch)]).view(len(tr), -1)
    return TeacherSignals(ratings, scores, seen, top, feats, explained,
                          scale, probs, neg_entropy, unobs_items, unobs_ratings, head_parts,
                          temperature=temperature)


def _rated_features(teacher: RecModel, tr, feature_dim: int, batch: int, quiet: bool):
    """(teacher ratings, PCA features, explained share) of every train rating. The hidden
    vectors are never held for the whole part (train ratings x hidden width: 4 GB and more
    at ML-1M's size): one pass sums them and their Gram matrix (float64), a second recomputes
    each batch and projects it on the top ``feature_dim`` components of the covariance."""
    n = len(tr)
    ratings, total, gram = [], None, None
    with progress(total=2 * n, desc="teacher signals", quiet=quiet, unit="row") as bar:
        for s in range(0, n, batch):
            r, h = teacher.rated(tr.user[s:s + batch], tr.item[s:s + batch])
            ratings.append(r.float())
            h = h.double()
            total = h.sum(0) if total is None else total + h.sum(0)
            gram = h.T @ h if gram is None else gram + h.T @ h
            bar.update(len(h))
        mean = total / n
        cov = (gram - n * torch.outer(mean, mean)) / max(1, n - 1)
        k = min(feature_dim, cov.shape[1], n)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[:k]
        comps = evecs[:, order].float()
        m32 = mean.float()
        feats = torch.empty(n, k)
        for s in range(0, n, batch):
            h = teacher.rated(tr.user[s:s + batch], tr.item[s:s + batch])[1].float()
            feats[s:s + len(h)] = (h - m32) @ comps
            bar.update(len(h))
    feats = feats / feats.std(0).clamp(min=1e-8)
    explained = float(evals[order].sum() / evals.sum().clamp(min=1e-12))
    return torch.cat(ratings), feats, explained


def _by_chunks(teacher: RecModel, enc: Encoded, seen: CsrRows, *, list_top: int,
               temperature: float, calibrate: bool, head: int, chunk: int, seed: int,
               quiet: bool):
    """(top, head probs, neg_entropy, scale, (head items, unseen, tail_each)) with the
    teacher scoring ``chunk`` users at a time: the temperature's sample of users first (its
    rows held together while the temperature is searched), then every user, each block
    freed before the next."""
    from ..evaluate import score_matrix

    def rows(users):
        return teacher.score_all(users).float()

    scale = (calibrate_temperature(lambda u: score_matrix(teacher, u, chunk=chunk), seen, enc,
                                   max_users=max(64, min(CALIBRATION_USERS,
                                                         CALIBRATION_CELLS // enc.n_items)),
                                   seed=seed)
             if calibrate else 1.0)
    n, m = enc.n_users, min(head, enc.n_items)
    top = torch.empty(n, min(list_top, enc.n_items), dtype=torch.long)
    items = torch.empty(n, m, dtype=torch.int32)
    probs, unseen = torch.empty(n, m), torch.empty(n, m, dtype=torch.bool)
    tail, neg_entropy = torch.empty(n), torch.empty(n)
    with progress(total=n, desc="teacher catalogue", quiet=quiet, unit="user") as bar:
        for s in range(0, n, chunk):
            users = torch.arange(s, min(s + chunk, n))
            sc, mask = rows(users), seen[users]
            top[users] = torch.topk(sc.masked_fill(mask, -torch.inf), top.shape[1], dim=1).indices
            it, p, un, te, ne = head_distribution(sc / scale, mask, temperature, m)
            items[users], probs[users], unseen[users] = it.int(), p, un
            tail[users], neg_entropy[users] = te, ne
            bar.update(len(users))
    return top, probs, neg_entropy, scale, (items, unseen, tail)


def signals_for(cfg, teacher: RecModel, enc: Encoded, scores: torch.Tensor | None) -> TeacherSignals:
    """The teacher's signals under the run's distillation settings (`pakd tune` computes
    them the same way, so a tuned trial reproduces under `pakd distill`)."""
    dc = cfg.distill
    return teacher_signals(teacher, enc, scores, list_top=max(dc.list_top, dc.kd_top),
                           feature_dim=dc.feature_dim, quiet=cfg.quiet,
                           temperature=dc.temperature, unobserved=dc.kd_rating_unobserved,
                           seed=cfg.seed, head=dc.catalogue_head,
                           chunk=min(256, user_chunk(enc.n_items, cfg.eval.max_memory_gb)))
