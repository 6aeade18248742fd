"""xDeepFM (Lian et al., KDD 2018): linear part + Compressed Interaction Network + DNN.

CIN layer k builds Z^k[h, d] = sum_{g, j} W^k[h, g, j] X^{k-1}[g, d] X^0[j, d] - an
explicit vector-wise interaction computed independently for every embedding dimension d.
With split-half (the paper's default), half of a non-final layer's maps feed the next layer
and half go to the output; every output map is sum-pooled over d. The DNN reads the
flattened field embeddings. Both branches' features, concatenated, are the hidden
representation; two linear heads (plus the first-order part) give rating and ranking logit.

Prunable structure: embedding dimensions (shared by all fields, since CIN needs equal
widths - dimension d owns column d of every field table and the DNN's input columns
f*D + d), CIN feature maps per layer, DNN neurons per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from .base import (ArchEntry, FieldEmbedding, FieldModel, Group, TokenTables, linear_layers, mlp,
                   neuron_groups)


class XDeepFM(FieldModel):
    kind = "xdeepfm"
    CROSS_PARAMS = ("cin.",)

    def __init__(self, schema: Schema, *, embed_dim: int, dnn: list[int], dropout: float,
                 cin_layers: list[int] | None = None, cin_next: list[int] | None = None,
                 cin_out: list[int] | None = None, rating_mean: float = 0.0, tables=None):
        """The CIN is given as ``cin_layers`` (maps per layer, the paper's form) or, as saved
        and after pruning, as ``cin_next`` / ``cin_out`` (maps sent on / to the output)."""
        super().__init__(schema, rating_mean)
        if cin_next is None or cin_out is None:
            if cin_layers is None:
                raise ValueError("xdeepfm needs cin_layers (or cin_next and cin_out)")
            sizes = cin_layers
            # split-half: non-final layers send half their maps on, half to the output
            cin_next = [h // 2 for h in sizes[:-1]] + [0]
            cin_out = [h - h // 2 for h in sizes[:-1]] + [sizes[-1]]
        self.embed_dim, self.cin_next, self.cin_out = embed_dim, list(cin_next), list(cin_out)
        self.dnn_sizes = list(dnn)
        self.dropout = dropout
        self.tokens = TokenTables(schema, tables)
        self.embedding = FieldEmbedding(schema, embed_dim, self.tokens)
        self.linear = FieldEmbedding(schema, 2, self.tokens)   # first-order terms, one per task
        m = self.embedding.n_fields
        self.m = m
        self.cin = nn.ModuleList()
        prev = m
        for nxt, out in zip(self.cin_next, self.cin_out):
            self.cin.append(nn.Linear(prev * m, nxt + out, bias=False))  # no bias, as in the paper
            prev = nxt
        self.dnn = mlp([m * embed_dim] + self.dnn_sizes, dropout)
        self.hidden_dim = sum(self.cin_out) + (self.dnn_sizes[-1] if self.dnn_sizes else 0)
        self.head = nn.Linear(self.hidden_dim, 2)
        with torch.no_grad():
            for e in self.linear.emb.values():
                e.weight.zero_()

    def arch(self) -> dict:
        return {"embed_dim": self.embed_dim, "cin_next": self.cin_next, "cin_out": self.cin_out,
                "dnn": self.dnn_sizes, "dropout": self.dropout}

    def cross(self, x0: torch.Tensor) -> torch.Tensor:
        """CIN in dimension-major layout: one [B*D, G*m] x [G*m, H] product per layer."""
        b, m, d = x0.shape
        xt0 = x0.transpose(1, 2)                                     # [B, D, m]
        x, pooled = xt0, []
        for layer, nxt in zip(self.cin, self.cin_next):
            z = (x.unsqueeze(3) * xt0.unsqueeze(2)).reshape(b, d, -1)  # [B, D, G*m]
            h = layer(z)                                             # [B, D, H]
            x = h[:, :, :nxt]
            pooled.append(h[:, :, nxt:].sum(1))                      # sum-pool over D
        return torch.cat(pooled, 1) if pooled else x0.new_zeros(b, 0)

    def cross_logit(self, x0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """`cross` read by the head's weights ``w`` without forming the output maps: a
        layer's output maps enter the logit only through sum(w_out . W_out z) over D, so
        w_out . W_out folds into one [G, m] matrix V and each layer costs sum(x V * x0)
        instead of a [G*m, out] product (the default layers over 8 fields: 4,672
        multiply-adds per embedding dimension instead of 73,728)."""
        b, m, d = x0.shape
        xt0 = x0.transpose(1, 2)                                     # [B, D, m]
        x, total, off = xt0, x0.new_zeros(b), 0
        for layer, nxt, out in zip(self.cin, self.cin_next, self.cin_out):
            g = x.shape[2]
            if out:
                v = (w[off:off + out] @ layer.weight[nxt:]).view(g, m)
                total = total + ((x @ v) * xt0).sum((1, 2))
                off += out
            if not nxt:      # later layers read no maps: their outputs are all zero
                break
            z = (x.unsqueeze(3) * xt0.unsqueeze(2)).reshape(b, d, -1)  # [B, D, G*m]
            x = z @ layer.weight[:nxt].T
        return total

    # --- structure
    def structure(self) -> list[Group]:
        m, d = self.m, self.embed_dim
        groups = []
        dims = torch.arange(d).unsqueeze(1)
        sl = [(f"embedding.emb.{name}.weight", 1, dims) for name in self.embedding.emb]
        if self.dnn_sizes:
            first = linear_layers(self.dnn)[0][0]
            cols = torch.arange(m).unsqueeze(0) * d + dims        # [D, m]: column f*D + dim
            sl.append((f"dnn.{first}.weight", 1, cols))
        groups.append(Group("embedding", "embedding_dim", d, sl,
                            acts=[(f"embedding.emb.{n}", dims) for n in self.embedding.emb],
                            arch=[ArchEntry("embed_dim")]))
        offset = 0
        for k, (nxt, out) in enumerate(zip(self.cin_next, self.cin_out)):
            h = nxt + out
            rows = torch.arange(h).unsqueeze(1)
            sl = [(f"cin.{k}.weight", 0, rows)]
            if nxt:  # maps sent on own their block of the next layer's input columns
                idx = torch.full((h, m), -1, dtype=torch.long)
                idx[:nxt] = torch.arange(nxt).unsqueeze(1) * m + torch.arange(m)
                sl.append((f"cin.{k + 1}.weight", 1, idx))
            head = torch.full((h, 1), -1, dtype=torch.long)   # output maps own a head column
            head[nxt:, 0] = offset + torch.arange(out)        # (= their hidden position)
            sl.append(("head.weight", 1, head))
            groups.append(Group(f"cin.{k}", "cin_map", h, sl, acts=[(f"cin.{k}", rows)],
                                arch=[ArchEntry("cin_next", k, 0, nxt),
                                      ArchEntry("cin_out", k, nxt)],
                                hidden=head))
            offset += out
        if self.dnn_sizes:
            groups += neuron_groups("dnn", self.dnn, [("head.weight", 1, sum(self.cin_out))],
                                    arch_key="dnn", hidden_offset=sum(self.cin_out))
        return groups
