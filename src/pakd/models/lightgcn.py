"""LightGCN (He et al., SIGIR 2020): embeddings smoothed over the user-item train graph.

Users and items are the nodes of one bipartite graph, an edge per train rating. With the
symmetric normalisation A_hat = D^-1/2 A D^-1/2 (D: node degrees), a node table E is
propagated K times, E_k = A_hat E_(k-1), with no weights and no non-linearity, and a node's
final vector is the layer mean (E_0 + ... + E_K) / (K + 1). Then

logit(u, i)  = c_i + e_u . e_i             (c_i: the item's ranking bias)
rating(u, i) = mu + b_u + b_i + r_u . r_i   (r: a second table propagated the same way)
hidden(u, i) = [r_u * r_i, e_u * e_i]

The ranking table learns a softmax over the whole catalogue (`pair_logits`/`score_all` are
one dot product, as in `pakd.models.svd`); the rating table, like SVD's rating factors, is
separate, so each output keeps its own best epoch on valid. The graph is the train part,
stored with the weights as CSR rows (``hist_indptr``, ``hist_items``), so a saved model
needs nothing else. A node with no train rating (an item rated only in valid or test, a
user with an empty train part) has no edge: its final vector is its own E_0 / (K + 1) and
its score comes from that row and its biases alone.

Prunable structure: ranking dimensions and rating dimensions (propagation acts on each
column on its own, so removing column k of E removes column k of every layer).

Fisher: a propagated table is not an embedding lookup - an example's gradient reaches every
node within K hops of its user and item - so `Propagation.fisher_squares` gives the exact
per-example squares that `pakd.fisher.estimate` sums (see there).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from .base import ArchEntry, Group, Output, RecModel
from .frozen import FrozenDot


class Propagation(nn.Module):
    """A node table [nodes, dim] read through LightGCN propagation: ``forward(nodes)`` gives
    the final (layer-mean) vectors of ``nodes`` (any shape), `table` all of them. The
    normalised adjacency comes from the owning model (``self.adjacency(dtype)``)."""

    def __init__(self, n_nodes: int, dim: int, layers: int, init_std: float):
        super().__init__()
        self.layers = layers
        self.weight = nn.Parameter(torch.empty(n_nodes, dim))
        nn.init.normal_(self.weight, std=init_std)
        self.adjacency = None          # set by the owner: dtype -> sparse [nodes, nodes]
        self._cache = None

    def _propagate(self, x: torch.Tensor) -> torch.Tensor:
        a = self.adjacency(x.dtype)
        acc = x
        for _ in range(self.layers):
            x = torch.sparse.mm(a, x)
            acc = acc + x
        return acc / (self.layers + 1)

    def table(self) -> torch.Tensor:
        """Every node's final vector. Without gradients (inference) it is computed once and
        kept until the weights or the graph change."""
        if torch.is_grad_enabled():
            return self._propagate(self.weight)
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, self.adjacency.__self__.graph_key())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._propagate(w.detach()))
        return self._cache[1]

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.table()[nodes]

    def spread(self, nodes: torch.Tensor) -> torch.Tensor:
        """[n_nodes, len(nodes)]: column m holds how strongly every node's E_0 row enters the
        final vector of ``nodes[m]`` (the propagation is linear and symmetric)."""
        y = torch.zeros(self.weight.shape[0], len(nodes), dtype=self.weight.dtype)
        y[nodes, torch.arange(len(nodes))] = 1.0
        return self._propagate(y)

    @torch.no_grad()
    def fisher_squares(self, nodes: torch.Tensor, d: torch.Tensor,
                       weight: torch.Tensor) -> torch.Tensor:
        """sum_n weight_n * g_n^2 [n_nodes, dim] for examples that read the final vectors of
        ``nodes`` [B, S] with output gradients ``d`` [B, S, dim]: example n's gradient with
        respect to E_0 is g_n = sum_s R[:, nodes[n, s]] d[n, s] (R: `spread`), so its
        squares sum to sum_(s, t) (R_s * R_t) @ (weight * d_s * d_t) - cross terms included,
        since a user's and an item's neighbourhoods overlap."""
        b, s = nodes.shape[0], nodes[0].numel()
        nodes = nodes.reshape(b, s)
        d = d.reshape(b, s, -1).to(self.weight.dtype)
        r = self.spread(nodes.reshape(-1)).view(-1, b, s)
        w = weight.to(d.dtype)[:, None]
        out = torch.zeros_like(self.weight)
        for p in range(s):
            for q in range(p, s):
                term = (r[:, :, p] * r[:, :, q]) @ (w * d[:, p] * d[:, q])
                out += term if p == q else 2 * term
        return out


def graph_tables(enc) -> tuple[dict, dict]:
    """(tables, arch entries) a LightGCN needs from the encoded data: the train part as CSR
    rows (user -> items)."""
    tr = enc.parts["train"]
    order = torch.argsort(tr.user * enc.n_items + tr.item)
    indptr = torch.zeros(enc.n_users + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(tr.user, minlength=enc.n_users).cumsum(0)
    items = tr.item[order]
    return {"hist_indptr": indptr, "hist_items": items}, {"history": len(items)}


class LightGCN(RecModel):
    kind = "lightgcn"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, dim: int, rate_dims: int, layers: int,
                 init_std: float, history: int, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        if layers < 0:
            raise ValueError(f"layers must be 0 or more, got {layers}")
        self.dim, self.rate_dims, self.layers = int(dim), int(rate_dims), int(layers)
        self.init_std, self.history = float(init_std), int(history)
        n_nodes = schema.n_users + schema.n_items
        self.rank = Propagation(n_nodes, self.dim, self.layers, init_std)
        self.rate = Propagation(n_nodes, self.rate_dims, self.layers, init_std)
        for p in (self.rank, self.rate):
            p.adjacency = self.adjacency
        self.user_bias = nn.Embedding(schema.n_users, 1)
        self.item_bias = nn.Embedding(schema.n_items, 1)
        self.item_rank_bias = nn.Embedding(schema.n_items, 1)
        for e in (self.user_bias, self.item_bias, self.item_rank_bias):
            nn.init.zeros_(e.weight)
        self.register_buffer("hist_indptr", torch.zeros(schema.n_users + 1, dtype=torch.long))
        self.register_buffer("hist_items", torch.zeros(self.history, dtype=torch.long))
        if tables is not None and "hist_items" in tables:
            self.set_history(tables["hist_indptr"], tables["hist_items"])
        self._adj = None

    def arch(self) -> dict:
        return {"dim": self.dim, "rate_dims": self.rate_dims, "layers": self.layers,
                "init_std": self.init_std, "history": self.history}

    @torch.no_grad()
    def set_history(self, indptr, items) -> None:
        """The train graph as CSR rows: user u rated ``items[indptr[u]:indptr[u + 1]]``."""
        items = torch.as_tensor(items).long()
        if len(items) != self.history:
            raise ValueError(f"the graph has {len(items)} edges, the architecture "
                             f"{self.history}")
        self.hist_indptr.copy_(torch.as_tensor(indptr).long())
        self.hist_items.copy_(items)

    def graph_key(self) -> tuple:
        return (self.hist_indptr.data_ptr(), self.hist_indptr._version,
                self.hist_items.data_ptr(), self.hist_items._version)

    def adjacency(self, dtype: torch.dtype) -> torch.Tensor:
        """A_hat = D^-1/2 A D^-1/2 over users then items (sparse, coalesced), built once per
        graph and dtype."""
        key = (self.graph_key(), dtype)
        if self._adj is None or self._adj[0] != key:
            n_users = self.schema.n_users
            n = n_users + self.schema.n_items
            lens = self.hist_indptr[1:] - self.hist_indptr[:-1]
            u = torch.repeat_interleave(torch.arange(n_users), lens)
            i = self.hist_items + n_users
            deg = torch.bincount(torch.cat([u, i]), minlength=n).to(torch.float64).clamp(min=1)
            w = (deg[u] * deg[i]).rsqrt()
            idx = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
            a = torch.sparse_coo_tensor(idx, torch.cat([w, w]).to(dtype), (n, n),
                                        check_invariants=False).coalesce()
            self._adj = (key, a)
        return self._adj[1]

    def _nodes(self, user, item) -> torch.Tensor:
        return torch.stack([user, item + self.schema.n_users], 1)

    def forward(self, user, item) -> Output:
        nodes = self._nodes(user, item)
        e, r = self.rank(nodes), self.rate(nodes)             # [B, 2, dim]
        rinter, inter = r[:, 0] * r[:, 1], e[:, 0] * e[:, 1]
        rating = (self.rating_mean + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
                  + rinter.sum(1))
        logit = self.item_rank_bias(item)[:, 0] + inter.sum(1)
        return Output(rating, logit, torch.cat([rinter, inter], 1))

    def pair_logits(self, user, item):
        e = self.rank(self._nodes(user, item))
        return self.item_rank_bias(item)[:, 0] + (e[:, 0] * e[:, 1]).sum(1)

    def score_all(self, users, items=None):
        t = self.rank.table()
        n_users = self.schema.n_users
        q = t[n_users:] if items is None else t[n_users + items]
        c = self.item_rank_bias.weight[:, 0] if items is None else self.item_rank_bias(items)[:, 0]
        return t[users] @ q.T + c

    @torch.no_grad()
    def frozen(self) -> FrozenDot:
        """Every node's final vectors computed once (what an exported graph holds)."""
        n_users = self.schema.n_users
        e, r = self.rank.table(), self.rate.table()
        return FrozenDot(self, user_rank=e[:n_users], item_rank=e[n_users:],
                         item_rank_bias=self.item_rank_bias.weight[:, 0], user_rate=r[:n_users],
                         item_rate=r[n_users:], user_bias=self.user_bias.weight[:, 0],
                         item_bias=self.item_bias.weight[:, 0]).eval()

    def catalogue_user_modules(self) -> list[str]:
        raise NotImplementedError("lightgcn's user rows are propagated from items: it is not "
                                  "a student")

    def task_params(self):
        names = [n for n, _ in self.named_parameters()]
        ranking = [n for n in names if n.startswith(("rank.", "item_rank_bias."))]
        return {"rating": [n for n in names if n not in ranking], "ranking": ranking}

    def lookup_rows(self, user, item):
        """The layer-0 rows of the batch's users and items (LightGCN's L2), and the biases."""
        nodes = item + self.schema.n_users
        return [(self.rank, user), (self.rank, nodes), (self.rate, user), (self.rate, nodes),
                (self.user_bias, user), (self.item_bias, item), (self.item_rank_bias, item)]

    def structure(self) -> list[Group]:
        groups = []
        for name, width, key, offset in (("rate", self.rate_dims, "rate_dims", 0),
                                         ("rank", self.dim, "dim", self.rate_dims)):
            idx = torch.arange(width).unsqueeze(1)
            groups.append(Group(f"{name}_dims", "embedding_dim", width,
                                [(f"{name}.weight", 1, idx)], acts=[(name, idx)],
                                arch=[ArchEntry(key)], hidden=offset + idx, degree=2))
        return groups
