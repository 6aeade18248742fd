"""Item neighbourhood on baseline residuals (the neighbourhood model Koren describes in
"Factorization meets the neighborhood", KDD 2008): a rating member that reads a user's own
train ratings of similar items.

- Baseline: b_ui = mu + b_u + b_i, the biases fitted by alternating ridge sweeps over the
  train ratings (`baseline_biases`).
- Similarity: the shrunk Pearson correlation of two items' baseline residuals over the users
  who rated both, s_ij = rho_ij * (n_ij - 1) / (n_ij - 1 + shrink) (`item_similarity`), so a
  correlation seen on few users counts for little.
- Prediction: r_ui = b_ui + sum_j s_ij (r_uj - b_uj) / sum_j s_ij over the ``k`` items j the
  user rated in train that are most similar to i (positive similarities only; none: b_ui).

Where the factor members compress every user and item into a few dimensions, it answers
from the user's ratings of the nearest items: a different error, which a rating mix can
average away. It rates only (its ranking score is the predicted rating) and has no prunable
structure. Its similarities are items^2 numbers, as EASE's weights are (``max_items``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..csr import csr_entries
from ..data.schema import Schema
from .base import Output, RecModel


def baseline_biases(user: np.ndarray, item: np.ndarray, rating: np.ndarray, n_users: int,
                    n_items: int, reg_user: float, reg_item: float, sweeps: int = 10):
    """(mu, user biases, item biases) minimising the squared error of mu + b_u + b_i plus
    ``reg_user`` |b_u|^2 + ``reg_item`` |b_i|^2, item and user sides solved in turn."""
    r = np.asarray(rating, dtype=np.float64)
    mu = float(r.mean())
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    n_u = np.bincount(user, minlength=n_users)
    n_i = np.bincount(item, minlength=n_items)
    for _ in range(sweeps):
        bi = np.bincount(item, r - mu - bu[user], n_items) / (n_i + reg_item)
        bu = np.bincount(user, r - mu - bi[item], n_users) / (n_u + reg_user)
    return mu, bu, bi


def item_similarity(residual: sp.csr_matrix, shrink: float, block: int = 2048) -> torch.Tensor:
    """Shrunk Pearson similarity [items, items] (float32, diagonal 0) of the columns of the
    users x items residual matrix (stored entries = rated pairs), ``block`` columns at a
    time so no more than a few items x block float64 matrices are held."""
    R = residual.tocsc().astype(np.float64)
    M = R.copy()
    M.data[:] = 1.0
    R2 = R.multiply(R).tocsc()
    RT, R2T, MT = R.T.tocsr(), R2.T.tocsr(), M.T.tocsr()
    n = R.shape[1]
    out = torch.zeros(n, n, dtype=torch.float32)
    for a in range(0, n, block):
        cols = slice(a, min(a + block, n))
        num = (RT @ R[:, cols]).toarray()
        sq_i = (R2T @ M[:, cols]).toarray()        # sum of r_ui^2 over the common users
        sq_j = (MT @ R2[:, cols]).toarray()        # sum of r_uj^2 over the common users
        common = (MT @ M[:, cols]).toarray()
        den = np.sqrt(sq_i * sq_j)
        rho = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        shrunk = np.where(common > 1, (common - 1) / (common - 1 + shrink), 0.0)
        out[:, cols] = torch.from_numpy(rho * shrunk).float()
    out.fill_diagonal_(0.0)
    return out


class ItemKNN(RecModel):
    kind = "knn"
    outputs = ("rating",)

    def __init__(self, schema: Schema, *, k: int, shrink: float, reg_user: float,
                 reg_item: float, history: int, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        self.k, self.shrink, self.history = int(k), float(shrink), int(history)
        self.reg_user, self.reg_item = float(reg_user), float(reg_item)
        frozen = dict(requires_grad=False)
        n_groups, n_near = self._sides(schema.n_users, schema.n_items)
        self.similarity = nn.Parameter(torch.zeros(n_near, n_near), **frozen)
        self.user_bias = nn.Parameter(torch.zeros(schema.n_users), **frozen)
        self.item_bias = nn.Parameter(torch.zeros(schema.n_items), **frozen)
        # the train residuals grouped by user (by item for UserKNN); hist_items holds the
        # other side's ids, the neighbours
        self.register_buffer("hist_indptr", torch.zeros(n_groups + 1, dtype=torch.long))
        self.register_buffer("hist_items", torch.zeros(self.history, dtype=torch.long))
        self.register_buffer("hist_residual", torch.zeros(self.history))

    @staticmethod
    def _sides(users, items):
        """(whose histories are read, whose similarities are kept) of a pair (user, item):
        the user's ratings of the items most similar to the item."""
        return users, items

    def arch(self) -> dict:
        return {"k": self.k, "shrink": self.shrink, "reg_user": self.reg_user,
                "reg_item": self.reg_item, "history": self.history}

    @torch.no_grad()
    def fit(self, user: np.ndarray, item: np.ndarray, rating: np.ndarray,
            block: int = 2048) -> "ItemKNN":
        """Biases, residual histories and similarities from the train ratings (index arrays
        and ratings; the baseline's mean replaces ``rating_mean``); the similarities
        ``block`` columns at a time (`item_similarity`)."""
        nu, ni = self.schema.n_users, self.schema.n_items
        mu, bu, bi = baseline_biases(user, item, rating, nu, ni, self.reg_user, self.reg_item)
        resid = np.asarray(rating, dtype=np.float64) - mu - bu[user] - bi[item]
        R = sp.csr_matrix((resid, self._sides(user, item)), shape=self._sides(nu, ni))
        R.sum_duplicates()
        R.sort_indices()
        if R.nnz != self.history:
            raise ValueError("history size differs from the architecture's")
        self.rating_mean.fill_(mu)
        self.user_bias.copy_(torch.from_numpy(bu))
        self.item_bias.copy_(torch.from_numpy(bi))
        self.hist_indptr.copy_(torch.from_numpy(R.indptr.astype(np.int64)))
        self.hist_items.copy_(torch.from_numpy(R.indices.astype(np.int64)))
        self.hist_residual.copy_(torch.from_numpy(R.data))
        self.similarity.copy_(item_similarity(R, self.shrink, block))
        return self

    def _neighbour_sums(self, sims: torch.Tensor, resid: torch.Tensor):
        """(sum s r / sum s, sum s) over the ``k`` largest positive entries of each row of
        ``sims`` (rows: predictions, columns: items the user rated; -inf: not rated),
        (0, 0) for none."""
        k = min(self.k, sims.shape[-1])
        if k == 0:
            return sims.new_zeros(sims.shape[:-1]), sims.new_zeros(sims.shape[:-1])
        top, at = sims.topk(k, dim=-1)
        top = top.clamp(min=0.0)                   # padding and negative similarity: no say
        r = torch.gather(resid.expand_as(sims), -1, at)
        den = top.sum(-1)
        return torch.where(den > 0, (top * r).sum(-1) / den.clamp(min=1e-12), 0.0), den

    def _neighbour_term(self, sims: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        return self._neighbour_sums(sims, resid)[0]

    def _pair_layout(self, user: torch.Tensor, item: torch.Tensor):
        """Each pair against its user's rated items laid out over the catalogue (unrated:
        -inf similarity; UserKNN: the item's raters over the users), so every shape is
        fixed by the batch and the catalogue: (similarities, residuals)."""
        group, target = self._sides(user, item)
        pair, entry = csr_entries(self.hist_indptr, group)
        j = self.hist_items[entry]
        shape = (len(user), self.similarity.shape[0])
        sims = torch.full(shape, -torch.inf, dtype=self.similarity.dtype)
        resid = torch.zeros(shape, dtype=self.hist_residual.dtype)
        sims[pair, j] = self.similarity[target[pair], j]
        resid[pair, j] = self.hist_residual[entry]
        return sims, resid

    def _pair_sums(self, user: torch.Tensor, item: torch.Tensor):
        """`_neighbour_sums` of each pair over its own stored entries only (the user's
        ratings; UserKNN: the item's raters), never a pairs x catalogue block."""
        group, target = self._sides(user, item)
        pair, entry = csr_entries(self.hist_indptr, group)
        sims = self.similarity[target[pair], self.hist_items[entry]]
        return top_k_by_segment(sims, self.hist_residual[entry], pair, len(user), self.k)

    def _base(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.rating_mean + self.user_bias[user] + self.item_bias[item]

    def predict_pairs(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return self.predict_pairs_laid_out(user, item)
        return self._base(user, item) + self._pair_sums(user, item)[0]

    def predict_pairs_laid_out(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """`predict_pairs` over the catalogue-wide layout: what ONNX export traces (shapes
        fixed by the batch and the catalogue, none by the data)."""
        return self._base(user, item) + self._neighbour_term(*self._pair_layout(user, item))

    def support(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The sum of the similarities each pair's prediction weighs (0: the baseline
        alone) - how much neighbourhood evidence stands behind it."""
        return self._pair_sums(user, item)[1]

    def forward(self, user, item) -> Output:
        r = self.predict_pairs(user, item)
        return Output(r, r, r.new_zeros(len(user), 0))

    def rated(self, user, item):
        r = self.predict_pairs(user, item)
        return r, r.new_zeros(len(user), 0)

    def score_all(self, users, items=None):
        """Predicted ratings of ``users`` x the catalogue (or ``items``), a user at a time:
        the similarity columns of their rated items only."""
        cols = torch.arange(self.schema.n_items) if items is None else items
        out = torch.empty(len(users), len(cols), dtype=self.similarity.dtype)
        for row, u in enumerate(users.tolist()):
            a, b = int(self.hist_indptr[u]), int(self.hist_indptr[u + 1])
            sims = self.similarity.index_select(1, self.hist_items[a:b])
            sims = sims if items is None else sims[items]
            term = self._neighbour_term(sims, self.hist_residual[a:b])
            out[row] = self._base(u, cols) + term
        return out

    def catalogue_user_modules(self) -> list[str]:
        raise NotImplementedError("knn is fitted in closed form, not step by step")


class UserKNN(ItemKNN):
    """The user neighbourhood: the same model with the two sides swapped. A pair (u, i) is
    predicted from the residuals on i of the ``k`` users most similar to u who rated i
    (similarity: the shrunk Pearson of two users' residuals over the items both rated), so
    it reads other users' ratings of the item where ItemKNN reads the user's own ratings
    of other items: another error for the rating mix to average. Its similarities are
    users^2 numbers (``max_users``)."""
    kind = "uknn"

    @staticmethod
    def _sides(users, items):
        return items, users

    def score_all(self, users, items=None):
        """Predicted ratings of ``users`` x the catalogue (or ``items``), a user at a time,
        from the stored (item, rater) entries: the top ``k`` positive similarities per
        item by sorting, never a dense items x users block."""
        cols = torch.arange(self.schema.n_items) if items is None else items.long()
        seg, entry = csr_entries(self.hist_indptr, cols)
        raters, resid = self.hist_items[entry], self.hist_residual[entry]
        out = torch.empty(len(users), len(cols), dtype=self.similarity.dtype)
        for row, u in enumerate(users.tolist()):
            term, _ = top_k_by_segment(self.similarity[u, raters], resid, seg, len(cols),
                                       self.k)
            out[row] = self._base(u, cols) + term
        return out


PAIR_BLOCK = 4096     # pairs solved at a time by knn_interp: k^2 floats each


class InterpolatedKNN(ItemKNN):
    """The item neighbourhood with interpolation weights solved per prediction (Bell &
    Koren, "Scalable collaborative filtering with jointly derived neighborhood
    interpolation weights", ICDM 2007), where ItemKNN averages by similarity.

    The ``k`` items j the user rated that are most similar to i (by knn's similarity, of
    either sign) are weighed by w solving (A + ridge I) w = b: A_jl is the mean product of
    the residuals of items j and l over the users who rated both, b_j that of i and j, each
    shrunk towards the mean over all item pairs with ``beta`` pseudo-users (the diagonal
    towards the mean of the diagonal): ``covariance``. Neighbours that repeat each other
    share their weight instead of each counting in full, and the weights need not sum to
    one. Its predictions err differently from knn's, so the rating mix can use both. It
    holds two items^2 matrices (similarity and covariance). Each pair's k x k system is
    solved by Gauss-Jordan elimination with partial pivoting unrolled over k
    (`solve_unrolled`): plain tensor operations, so the ONNX graph solves as PyTorch does."""
    kind = "knn_interp"

    def __init__(self, schema: Schema, *, beta: float, ridge: float, **kw):
        super().__init__(schema, **kw)
        self.beta, self.ridge = float(beta), float(ridge)
        n = schema.n_items
        self.covariance = nn.Parameter(torch.zeros(n, n), requires_grad=False)

    def arch(self) -> dict:
        return {**super().arch(), "beta": self.beta, "ridge": self.ridge}

    @torch.no_grad()
    def fit(self, user: np.ndarray, item: np.ndarray, rating: np.ndarray,
            block: int = 2048) -> "InterpolatedKNN":
        """knn's fit, then the shrunk co-residual means, ``block`` columns at a time (so no
        more than a few items x block float64 matrices are held beside the result)."""
        super().fit(user, item, rating, block)
        n_u, n_i = self.schema.n_users, self.schema.n_items
        R = sp.csc_matrix(sp.csr_matrix((self.hist_residual.double().numpy(),
                                         self.hist_items.numpy(), self.hist_indptr.numpy()),
                                        shape=(n_u, n_i)))
        M = R.copy()
        M.data[:] = 1.0
        RT, MT = R.T.tocsr(), M.T.tocsr()
        prod, count = self.covariance.data, torch.zeros(n_i, n_i, dtype=torch.float32)
        total = np.zeros(4)             # sum of products, of counts, and their diagonals
        for a in range(0, n_i, block):
            cols = slice(a, min(a + block, n_i))
            p, c = (RT @ R[:, cols]).toarray(), (MT @ M[:, cols]).toarray()
            idx = np.arange(cols.start, cols.stop)
            total += [p.sum(), c.sum(), p[idx, idx - a].sum(), c[idx, idx - a].sum()]
            prod[:, cols], count[:, cols] = torch.from_numpy(p), torch.from_numpy(c)
        off = (total[0] - total[2]) / max(total[1] - total[3], 1.0)
        diag = total[2] / max(total[3], 1.0)
        d = prod.diagonal().clone()
        prod.add_(self.beta * off)
        prod.diagonal().copy_(d + self.beta * diag)
        prod.div_(count.add_(self.beta))
        return self

    def _neighbours(self, user: torch.Tensor, item: torch.Tensor):
        """Each pair's ``k`` nearest rated items, padded: (items [P, k], residuals [P, k],
        present [P, k])."""
        pair, entry = csr_entries(self.hist_indptr, user)
        sims = self.similarity[item[pair], self.hist_items[entry]]
        order, rank, counts = rank_in_segments(sims, pair, len(user))
        pair, entry = pair[order], entry[order]
        top = rank < self.k
        k = max(min(self.k, int(counts.max())) if len(counts) else 0, 1)
        items = torch.zeros(len(user), k, dtype=torch.long)
        resid = torch.zeros(len(user), k, dtype=self.hist_residual.dtype)
        present = torch.zeros(len(user), k, dtype=torch.bool)
        at = (pair[top], rank[top])
        items[at], resid[at], present[at] = self.hist_items[entry[top]], \
            self.hist_residual[entry[top]], True
        return items, resid, present

    def weights(self, user: torch.Tensor, item: torch.Tensor):
        """(interpolation weights [P, k], the neighbours' residuals [P, k]); absent
        neighbours weigh 0."""
        items, resid, present = self._neighbours(user, item)
        return self._solve(items, item, present), resid

    def _solve(self, items: torch.Tensor, item: torch.Tensor, present: torch.Tensor):
        """w [P, k] of (A + ridge I) w = b for each pair's neighbours ``items`` [P, k] of its
        ``item`` [P]; a neighbour not ``present`` gets a unit row and weight 0, and so do
        the neighbours of a singular system (the pair falls back to its baseline)."""
        C = self.covariance
        A = C[items.unsqueeze(-1), items.unsqueeze(-2)].double()
        b = C[items, item.unsqueeze(-1)].double()
        both = present.unsqueeze(-1) & present.unsqueeze(-2)
        eye = torch.eye(items.shape[1], dtype=A.dtype)
        A = torch.where(both, A, 0.0) + eye * torch.where(present, self.ridge, 1.0).unsqueeze(-1)
        w = solve_unrolled(A, torch.where(present, b, 0.0))
        return torch.where(torch.isfinite(w).all(-1, keepdim=True), w, 0.0)

    def predict_pairs(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return self.predict_pairs_laid_out(user, item)
        base = self._base(user, item)
        terms = [(w * r.double()).sum(-1) for w, r in (
            self.weights(user[a:a + PAIR_BLOCK], item[a:a + PAIR_BLOCK])
            for a in range(0, len(user), PAIR_BLOCK))]
        return base + (torch.cat(terms).to(base.dtype) if terms else torch.zeros_like(base))

    def predict_pairs_laid_out(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """`predict_pairs` over the catalogue-wide layout (what ONNX export traces): each
        pair's k most similar rated items over the catalogue, ties to the lower item index
        as the pair search's stable sort of the stored entries gives them."""
        sims, resid = self._pair_layout(user, item)
        k = min(self.k, sims.shape[-1])
        if torch.compiler.is_exporting():     # ONNX TopK breaks ties to the lower index
            top, near = sims.topk(k, dim=-1)
        else:                                 # torch.topk does not promise to: sort
            top, near = torch.sort(sims, dim=-1, descending=True, stable=True)
            top, near = top[:, :k], near[:, :k]
        present = top > -torch.inf
        w = self._solve(near, item, present)
        r = torch.gather(resid, -1, near).double()
        base = self._base(user, item)
        return base + (w * torch.where(present, r, 0.0)).sum(-1).to(base.dtype)

    def score_all(self, users, items=None):
        """Predicted ratings of ``users`` x the catalogue (or ``items``), a user at a time:
        each item's neighbours by one stable sort of the similarity columns of the user's
        rated items (the order `_neighbours` gives), solved in blocks of items."""
        cols = torch.arange(self.schema.n_items) if items is None else items.long()
        out = torch.empty(len(users), len(cols), dtype=self.similarity.dtype)
        for row, u in enumerate(users.tolist()):
            a, b = int(self.hist_indptr[u]), int(self.hist_indptr[u + 1])
            base = self._base(u, cols)
            k = min(self.k, b - a)
            if k == 0:
                out[row] = base
                continue
            hist, resid = self.hist_items[a:b], self.hist_residual[a:b]
            sims = self.similarity.index_select(1, hist)[cols]          # [cols, rated]
            for c in range(0, len(cols), PAIR_BLOCK):
                block = cols[c:c + PAIR_BLOCK]
                near = torch.sort(-sims[c:c + PAIR_BLOCK].double(), dim=1,
                                  stable=True).indices[:, :k]
                w = self._solve(hist[near], block, torch.ones_like(near, dtype=torch.bool))
                out[row, c:c + len(block)] = base[c:c + len(block)] + (
                    w * resid[near].double()).sum(-1).to(out.dtype)
        return out


def solve_unrolled(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [P, k] of A x = b for a batch of systems A [P, k, k], b [P, k]: Gauss-Jordan
    elimination with partial pivoting, one step per column in plain tensor operations
    (the row swap as a rank-one update), so tracing unrolls it into an ONNX graph."""
    k = A.shape[-1]
    M = torch.cat([A, b.unsqueeze(-1)], -1)                      # [P, k, k + 1]
    rows = torch.arange(k)
    for i in range(k):
        cand = torch.where(rows >= i, M[:, :, i].abs(), -1.0)   # pivot among rows i..
        at = (rows == cand.argmax(-1, keepdim=True)).to(M.dtype)        # [P, k]
        e = (rows == i).to(M.dtype)                                       # [k]
        pivot_row = (at.unsqueeze(-1) * M).sum(1)
        M = M + (e.view(1, k, 1) - at.unsqueeze(-1)) * (pivot_row - M[:, i]).unsqueeze(1)
        lead = M[:, i] / M[:, i, i:i + 1]
        M = M - (M[:, :, i:i + 1] * (1 - e).view(1, k, 1)) * lead.unsqueeze(1)
        M = M * (1 - e).view(1, k, 1) + e.view(1, k, 1) * lead.unsqueeze(1)
    return M[:, :, k]


def rank_in_segments(sims: torch.Tensor, seg: torch.Tensor, n_seg: int):
    """Entries (``seg``: each one's segment among ``n_seg``; ``sims`` in [-1, 1]) ordered by
    segment, then by similarity, largest first, ties in entry order: (the order, each
    ordered entry's rank within its segment, the entries per segment)."""
    key = seg.double() * 4 + (1 - sims.double())
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(seg, minlength=n_seg)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return order, torch.arange(len(seg)) - starts, counts


def top_k_by_segment(sims: torch.Tensor, values: torch.Tensor, seg: torch.Tensor,
                     n_seg: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per segment (``seg``: each entry's segment among ``n_seg``): (sum s v / sum s, sum s)
    over its ``k`` entries of largest positive similarity ``s`` (at most 1, as a shrunk
    correlation is), (0, 0) for none - ItemKNN's `_neighbour_sums` for entries held as a
    flat list instead of dense rows."""
    keep = sims > 0
    sims, values, seg = sims[keep], values[keep], seg[keep]
    order, rank, _ = rank_in_segments(sims, seg, n_seg)
    sims, values, seg = sims[order], values[order], seg[order]
    top = rank < k
    num = sims.new_zeros(n_seg).index_add_(0, seg[top], sims[top] * values[top])
    den = sims.new_zeros(n_seg).index_add_(0, seg[top], sims[top])
    return torch.where(den > 0, num / den.clamp(min=1e-12), 0.0), den
