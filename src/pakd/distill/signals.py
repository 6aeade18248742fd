"""What the teacher tells the student, computed once per run.

- ratings: the teacher's rating prediction for every train rating;
- scores: the teacher's full users x items ranking scores (from the cached member matrices);
- top: per user, the teacher's ``list_top`` best items among those the user did not rate in
  train - the head of every candidate list in listwise distillation;
- features: the teacher's hidden representation of every train rating, reduced by PCA to
  ``feature_dim`` standardised components (the ensemble's hidden concatenates its members'
  and is too wide to store whole).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.encoding import Encoded
from ..errors import PakdError
from ..models.base import RecModel
from ..runtime import progress


@dataclass
class TeacherSignals:
    ratings: torch.Tensor     # [n_train]
    scores: torch.Tensor      # [n_users, n_items]
    top: torch.Tensor         # [n_users, list_top] item indices
    features: torch.Tensor    # [n_train, feature_dim]
    explained: float          # share of hidden variance the PCA keeps


@torch.no_grad()
def teacher_signals(teacher: RecModel, enc: Encoded, scores: torch.Tensor | None, *,
                    list_top: int, feature_dim: int, quiet: bool = True,
                    batch: int = 1024) -> TeacherSignals:
    if scores is None:
        raise PakdError("distillation needs the teacher's full score matrix; raise "
                        "--score-cache-limit above users x items")
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
    masked = scores.clone()
    seen = enc.seen(("train",))
    rows = torch.repeat_interleave(torch.arange(enc.n_users),
                                   torch.from_numpy(seen.indptr[1:] - seen.indptr[:-1]).long())
    masked[rows, torch.from_numpy(seen.indices).long()] = -torch.inf
    top = torch.topk(masked, min(list_top, enc.n_items), dim=1).indices
    return TeacherSignals(torch.cat(ratings), scores, top, feats, explained)
