"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's train history.

A user's train items in time order (the split keeps timestamps; ties by item index), the
last ``max_len`` of them, right-aligned and left-padded, are embedded (the item table,
scaled by sqrt(dim), plus a learned position vector) and go through ``blocks`` pre-norm
transformer blocks: causal multi-head self-attention (position t sees positions <= t,
never a later item, never padding) and a ReLU feed-forward layer, each added to its input.
The output at the last position is the user's vector h_u; items are scored by the same
item table (tied input and output embeddings):

logit(u, i)  = c_i + h_u . E_i
rating(u, i) = mu + b_u + b_i + p_u . q_i
hidden(u, i) = [p_u * q_i, h_u * E_i]

The rating head is a biased factorisation of its own: the history says which items a user
rated, not how, and keeping the heads disjoint lets each keep its own best epoch on valid
(as SVD's do). Training (`pakd.train.sequence`) predicts every next item of every train
sequence with a softmax over the catalogue.

Users with short histories: a user with one train item is scored from that item alone (a
sequence of length one); a user with no train item has h_u = 0, so their ranking is the
items' learned biases c_i (a popularity ranking) and their rating the biased
factorisation's.

Prunable structure: attention heads and feed-forward neurons of each block, and whole
blocks (a block whose units are all gone adds nothing to its input: the maps that write
into the residual stream have no bias, so zeroing a block's weights and removing it are
the same). The model width is not prunable: layer normalisation (without learned scale or
shift, so every parameter is an ``nn.Linear`` or ``nn.Embedding``, as
`pakd.fisher.estimate` needs) averages over it, so a zeroed dimension would still change
the other dimensions' outputs. The rating factors are prunable like SVD's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import Schema
from .base import ArchEntry, Group, Output, RecModel
from .frozen import FrozenDot


def _per_block(value, blocks: int, what: str) -> list[int]:
    out = list(value) if isinstance(value, (list, tuple)) else [int(value)] * int(blocks)
    if len(out) != int(blocks):
        raise ValueError(f"{what}: {len(out)} entries for {blocks} blocks")
    return [int(v) for v in out]


class Block(nn.Module):
    """One pre-norm transformer block; 0 heads (or neurons) leaves that half out."""

    def __init__(self, dim: int, heads: int, head_dim: int, neurons: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.neurons = heads, head_dim, neurons
        width = heads * head_dim
        self.q, self.k, self.v = (nn.Linear(dim, width) for _ in range(3))
        self.o = nn.Linear(width, dim, bias=False)
        self.att_act = nn.Identity()           # hook point: each head's output
        self.ffn1 = nn.Linear(dim, neurons)
        self.ffn2 = nn.Linear(neurons, dim, bias=False)
        self.ffn_act = nn.Identity()           # hook point: the neurons' outputs
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim]; allowed [B, L, L] bool: query t may read key s."""
        b, n, d = x.shape
        if self.heads:
            h = F.layer_norm(x, (d,))
            q, k, v = (m(h).view(b, n, self.heads, self.head_dim).transpose(1, 2)
                       for m in (self.q, self.k, self.v))                     # [B, H, L, dk]
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            a = torch.softmax(s.masked_fill(~allowed[:, None], float("-inf")), -1)
            o = (self.drop(a) @ v).transpose(1, 2).reshape(b, n, -1)
            x = x + self.drop(self.o(self.att_act(o)))
        if self.neurons:
            h = F.layer_norm(x, (d,))
            x = x + self.drop(self.ffn2(self.ffn_act(torch.relu(self.ffn1(h)))))
        return x


def sequence_tables(enc) -> tuple[dict, dict]:
    """(tables, arch entries) a SASRec needs from the encoded data: each user's train items
    in time order (ties by item index) as CSR rows."""
    tr = enc.parts["train"]
    ts = getattr(tr, "timestamp", None)
    ts = np.zeros(len(tr), dtype=np.int64) if ts is None else ts.numpy()
    order = np.lexsort((tr.item.numpy(), ts, tr.user.numpy()))
    indptr = torch.zeros(enc.n_users + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(tr.user, minlength=enc.n_users).cumsum(0)
    items = tr.item[torch.from_numpy(order)]
    return {"hist_indptr": indptr, "hist_items": items}, {"history": len(items)}


class SASRec(RecModel):
    kind = "sasrec"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, dim: int, blocks: int, heads, head_dim: int,
                 neurons, max_len: int, dropout: float, rate_dims: int, init_std: float,
                 history: int, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.dim, self.head_dim, self.max_len = int(dim), int(head_dim), int(max_len)
        self.heads = _per_block(heads, blocks, "heads")
        self.neurons = _per_block(neurons, blocks, "neurons")
        self.dropout, self.rate_dims = float(dropout), int(rate_dims)
        self.init_std, self.history = float(init_std), int(history)
        self.item_emb = nn.Embedding(schema.n_items + 1, self.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(self.max_len, self.dim)
        self.blocks = nn.ModuleList(Block(self.dim, h, self.head_dim, n, self.dropout)
                                    for h, n in zip(self.heads, self.neurons))
        self.drop = nn.Dropout(self.dropout)
        self.item_rank_bias = nn.Embedding(schema.n_items, 1)
        self.user_factors = nn.Embedding(schema.n_users, self.rate_dims)
        self.item_factors = nn.Embedding(schema.n_items, self.rate_dims)
        self.user_bias = nn.Embedding(schema.n_users, 1)
        self.item_bias = nn.Embedding(schema.n_items, 1)
        for e in (self.item_emb, self.pos_emb, self.user_factors, self.item_factors):
            nn.init.normal_(e.weight, std=self.init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for e in (self.item_rank_bias, self.user_bias, self.item_bias):
            nn.init.zeros_(e.weight)
        self.register_buffer("hist_indptr", torch.zeros(schema.n_users + 1, dtype=torch.long))
        self.register_buffer("hist_items", torch.zeros(self.history, dtype=torch.long))
        if tables is not None and "hist_items" in tables:
            self.set_history(tables["hist_indptr"], tables["hist_items"])

    def arch(self) -> dict:
        return {"dim": self.dim, "blocks": len(self.heads), "heads": list(self.heads),
                "head_dim": self.head_dim, "neurons": list(self.neurons),
                "max_len": self.max_len, "dropout": self.dropout, "rate_dims": self.rate_dims,
                "init_std": self.init_std, "history": self.history}

    def arch_from_state(self, sd: dict) -> dict:
        """The architecture a (pruned) state dict holds: units per block, rating factors."""
        a = self.arch()
        a["heads"] = [sd[f"blocks.{b}.q.weight"].shape[0] // self.head_dim
                      for b in range(len(self.heads))]
        a["neurons"] = [sd[f"blocks.{b}.ffn1.weight"].shape[0] for b in range(len(self.heads))]
        a["rate_dims"] = sd["user_factors.weight"].shape[1]
        return a

    @torch.no_grad()
    def set_history(self, indptr, items) -> None:
        """Each user's train items in time order, as CSR rows."""
        items = torch.as_tensor(items).long()
        if len(items) != self.history:
            raise ValueError(f"the history has {len(items)} items, the architecture "
                             f"{self.history}")
        self.hist_indptr.copy_(torch.as_tensor(indptr).long())
        self.hist_items.copy_(items)

    # ------------------------------------------------------------------ sequences
    def sequences(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users), max_len] tokens (item index + 1, 0 = padding) of each user's last
        ``max_len`` train items, oldest first, right-aligned."""
        n = self.max_len
        end = self.hist_indptr[users + 1]
        length = (end - self.hist_indptr[users]).clamp(max=n)
        pos = torch.arange(n) - (n - length[:, None])                      # < 0: padding
        idx = (end[:, None] - length[:, None] + pos).clamp(min=0, max=max(0, self.history - 1))
        tok = self.hist_items[idx] + 1 if self.history else torch.zeros_like(idx)
        return torch.where(pos >= 0, tok, torch.zeros_like(tok))

    def encode(self, tokens: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs [B, L, dim] of the blocks at every position of ``tokens`` [B, L] (item
        index + 1, 0 = padding, right-aligned); ``x``: their item vectors when already
        looked up. Position t reads positions <= t only."""
        b, n = tokens.shape
        if x is None:
            x = self.item_emb(tokens)
        pos = self.pos_emb(torch.arange(self.max_len - n, self.max_len).expand(b, n))
        real = tokens > 0
        x = self.drop(x * math.sqrt(self.dim) + pos) * real[..., None].to(x.dtype)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        # a query reads earlier real items and always itself (so no row is empty)
        allowed = (causal & real[:, None, :]) | torch.eye(n, dtype=torch.bool)
        for block in self.blocks:
            x = block(x, allowed)
        return F.layer_norm(x, (self.dim,))

    def user_vectors(self, users: torch.Tensor, x: torch.Tensor | None = None,
                     tokens: torch.Tensor | None = None) -> torch.Tensor:
        """h_u [len(users), dim]: the last position's output; 0 for an empty history."""
        tokens = self.sequences(users) if tokens is None else tokens
        h = self.encode(tokens, x)[:, -1]
        return h * (tokens[:, -1] > 0)[:, None].to(h.dtype)

    # ------------------------------------------------------------------ outputs
    def forward(self, user, item) -> Output:
        tokens = self.sequences(user)
        # one lookup of the item table per pass: the history and the scored item
        e = self.item_emb(torch.cat([tokens, item[:, None] + 1], 1))
        h = self.user_vectors(user, e[:, :-1], tokens)
        ei = e[:, -1]
        inter = h * ei
        p, q = self.user_factors(user), self.item_factors(item)
        rinter = p * q
        rating = (self.rating_mean + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
                  + rinter.sum(1))
        return Output(rating, self.item_rank_bias(item)[:, 0] + inter.sum(1),
                      torch.cat([rinter, inter], 1))

    def pair_logits(self, user, item):
        h = self.user_vectors(user)
        return self.item_rank_bias(item)[:, 0] + (h * self.item_emb(item + 1)).sum(1)

    def catalogue(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of user vectors ``h`` [..., dim] against the catalogue (or ``items``)."""
        e = self.item_emb.weight[1:] if items is None else self.item_emb.weight[items + 1]
        c = self.item_rank_bias.weight[:, 0] if items is None else self.item_rank_bias.weight[items, 0]
        return h @ e.T + c

    def score_all(self, users, items=None):
        return self.catalogue(self.user_vectors(users), items)

    @torch.no_grad()
    def frozen(self, chunk: int = 1024) -> FrozenDot:
        """Every user's vector computed once (what an exported graph holds)."""
        was = self.training
        self.eval()
        users = torch.arange(self.schema.n_users)
        h = torch.cat([self.user_vectors(users[s:s + chunk])
                       for s in range(0, len(users), chunk)]) if len(users) else \
            torch.zeros(0, self.dim)
        self.train(was)
        return FrozenDot(self, user_rank=h, item_rank=self.item_emb.weight[1:],
                         item_rank_bias=self.item_rank_bias.weight[:, 0],
                         user_rate=self.user_factors.weight, item_rate=self.item_factors.weight,
                         user_bias=self.user_bias.weight[:, 0],
                         item_bias=self.item_bias.weight[:, 0]).eval()

    # ------------------------------------------------------------------ training helpers
    def rating_of(self, user, item) -> torch.Tensor:
        """The rating output alone (the sequence part is not run)."""
        p, q = self.user_factors(user), self.item_factors(item)
        return (self.rating_mean + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
                + (p * q).sum(1))

    def predict(self, user, item):
        return self.rating_of(user, item)

    def catalogue_user_modules(self) -> list[str]:
        raise NotImplementedError("sasrec's user vectors come from histories: it is not a "
                                  "student")

    def task_params(self):
        names = [n for n, _ in self.named_parameters()]
        rating = [n for n in names if n.startswith(("user_factors.", "item_factors.",
                                                    "user_bias.", "item_bias."))]
        return {"rating": rating, "ranking": [n for n in names if n not in rating]}

    def lookup_rows(self, user, item):
        """Rows of the rating factorisation (row-wise L2, as SVD's); the sequence part is
        regularised by dropout and weight decay."""
        return [(self.user_factors, user), (self.item_factors, item), (self.user_bias, user),
                (self.item_bias, item)]

    # ------------------------------------------------------------------ structure
    def _head_slices(self, b: int, rows: torch.Tensor) -> list:
        p = f"blocks.{b}"
        return ([(f"{p}.{m}.weight", 0, rows) for m in "qkv"]
                + [(f"{p}.{m}.bias", 0, rows) for m in "qkv"] + [(f"{p}.o.weight", 1, rows)])

    def _neuron_slices(self, b: int, rows: torch.Tensor) -> list:
        p = f"blocks.{b}"
        return [(f"{p}.ffn1.weight", 0, rows), (f"{p}.ffn1.bias", 0, rows),
                (f"{p}.ffn2.weight", 1, rows)]

    def structure(self) -> list[Group]:
        groups = []
        live = [b for b, (h, n) in enumerate(zip(self.heads, self.neurons)) if h or n]
        for b in live:
            h, n = self.heads[b], self.neurons[b]
            if h:
                rows = torch.arange(h).unsqueeze(1) * self.head_dim + torch.arange(self.head_dim)
                groups.append(Group(f"heads.{b}", "attention_head", h, self._head_slices(b, rows),
                                    acts=[(f"blocks.{b}.att_act", rows)],
                                    arch=[ArchEntry("heads", b)]))
            if n:
                rows = torch.arange(n).unsqueeze(1)
                groups.append(Group(f"neurons.{b}", "neuron", n, self._neuron_slices(b, rows),
                                    acts=[(f"blocks.{b}.ffn_act", rows)],
                                    arch=[ArchEntry("neurons", b)]))
        if live:       # a block: every entry of its heads and neurons (one unit per row)
            slices = []
            for j, b in enumerate(live):
                for width, make in ((self.heads[b] * self.head_dim, self._head_slices),
                                    (self.neurons[b], self._neuron_slices)):
                    idx = torch.full((len(live), max(1, width)), -1, dtype=torch.long)
                    idx[j, :width] = torch.arange(width)
                    slices += make(b, idx)
            groups.append(Group("blocks", "block", len(live), slices))
        r = torch.arange(self.rate_dims).unsqueeze(1)
        groups.append(Group("rate_dims", "mf_factor", self.rate_dims,
                            [("user_factors.weight", 1, r), ("item_factors.weight", 1, r)],
                            acts=[("user_factors", r), ("item_factors", r)],
                            arch=[ArchEntry("rate_dims")], hidden=r, degree=2))
        return groups
