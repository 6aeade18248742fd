"""The two graphs a deployed model answers with, as PyTorch modules that export to ONNX, and
one interface (`Graphs`) over them whether they run in PyTorch or in onnxruntime.

top-K:  user [B] int64, seen [B, S] int64 (item indices to skip, -1 = padding)
        -> scores [B, K] float32, items [B, K] int64, best first
rating: user [B] int64, item [B] int64 -> rating [B] float32

Seen items travel as an input rather than as a table inside the graph: the graph stays the
model's size (a users x items mask would not), and a caller may skip anything it likes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models import RecModel
from ..models.ensemble import Ensemble

TOPK_INPUTS, TOPK_OUTPUTS = ("user", "seen"), ("scores", "items")
RATING_INPUTS, RATING_OUTPUTS = ("user", "item"), ("rating",)


def catalogue_logits(model: RecModel, users: torch.Tensor) -> torch.Tensor:
    """Ranking logits [B, n_items] in a form that traces: one pass of ``score_all`` where the
    model has one, else every (user, item) pair through ``pair_logits``."""
    if isinstance(model, Ensemble):
        return model.combine_scores({n: catalogue_logits(model.members[n], users)
                                     for n in model.ranking_mix}, users)
    if model.one_pass_score_all:
        return model.score_all(users)
    n, b = model.schema.n_items, users.shape[0]
    uu = users[:, None].expand(b, n).reshape(-1)
    ii = torch.arange(n)[None].expand(b, n).reshape(-1)
    return model.pair_logits(uu, ii).view(b, n)


class TopKGraph(nn.Module):
    def __init__(self, model: RecModel, k: int):
        super().__init__()
        self.model, self.k = model, min(int(k), model.schema.n_items)

    def forward(self, user: torch.Tensor, seen: torch.Tensor):
        return masked_topk(catalogue_logits(self.model, user), seen, self.k)


def masked_topk(scores: torch.Tensor, seen: torch.Tensor, k: int):
    """(values, indices) of each row's k best scores once the ``seen`` items (-1 = padding)
    are set to -inf."""
    n = scores.shape[1]
    # one spare column takes the padding (-1 -> n) and is cut off again
    scores = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], 1)
    scores = scores.scatter(1, torch.where(seen < 0, n, seen), float("-inf"))[:, :n]
    top = torch.topk(scores, k, dim=1)
    return top.values, top.indices


class RatingGraph(nn.Module):
    def __init__(self, model: RecModel):
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor, item: torch.Tensor):
        return self.model.predict(user, item)


class Graphs:
    """top-K and rating answers from either backend, as numpy arrays."""

    backend = "base"
    k: int

    def top(self, users: np.ndarray, seen: np.ndarray,
            k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, items) [len(users), at least min(k, self.k)], best first; a graph with a
        fixed K may return more than ``k``."""
        raise NotImplementedError  # pragma: no cover

    def rate(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover


class TorchGraphs(Graphs):
    """The model's own scoring path (``score_all``, chunked for pairwise models), not the
    traced one: fastest in PyTorch, and an independent reference for ONNX parity."""
    backend = "pytorch"

    def __init__(self, model: RecModel, k: int):
        self.model = model.eval()
        self.rating = RatingGraph(model)
        self.k = min(int(k), model.schema.n_items)

    def top(self, users, seen, k=None):
        with torch.inference_mode():
            scores = self.model.score_all(torch.as_tensor(users, dtype=torch.long))
            row, col = np.nonzero(np.asarray(seen) >= 0)
            scores[torch.from_numpy(row), torch.from_numpy(np.asarray(seen)[row, col])] = -torch.inf
            top = torch.topk(scores, min(k or self.k, self.k), dim=1)
        return top.values.numpy(), top.indices.numpy()

    def rate(self, users, items):
        with torch.inference_mode():
            return self.rating(torch.as_tensor(users, dtype=torch.long),
                               torch.as_tensor(items, dtype=torch.long)).numpy()


def onnxruntime():
    """onnxruntime with its telemetry events switched off: pakd reports nothing anywhere
    (on Windows onnxruntime would otherwise log usage events to the system)."""
    import onnxruntime as ort
    ort.disable_telemetry_events()
    return ort


class OnnxGraphs(Graphs):
    backend = "onnxruntime"

    def __init__(self, topk_path: Path, rating_path: Path, threads: int = 1):
        ort = onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        prov = ["CPUExecutionProvider"]
        self.topk = ort.InferenceSession(str(topk_path), opts, providers=prov)
        self.rating = ort.InferenceSession(str(rating_path), opts, providers=prov)
        self.k = int(self.topk.get_outputs()[0].shape[1])

    def top(self, users, seen, k=None):
        s, i = self.topk.run(list(TOPK_OUTPUTS), {"user": np.asarray(users, np.int64),
                                                  "seen": np.asarray(seen, np.int64)})
        return s, i

    def rate(self, users, items):
        return self.rating.run(list(RATING_OUTPUTS), {"user": np.asarray(users, np.int64),
                                                      "item": np.asarray(items, np.int64)})[0]
