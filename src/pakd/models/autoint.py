"""AutoInt (Song et al., CIKM 2019): field embeddings through stacked multi-head
self-attention "interacting layers" with residual connections; AutoInt+ adds a DNN branch.

Layer l maps each field's vector x_f to ReLU(concat_h sum_g a^h_{fg} W_V^h x_g + W_R x_f),
with a^h = softmax_g(<W_Q^h x_f, W_K^h x_g>) (the paper's unscaled inner product). Q, K, V and
the residual map R are separate bias-free linear layers, so a head is a contiguous slice of
each and can be removed exactly. A first-order part (user/item/field biases) is added to the
heads: on explicit ratings the per-user and per-item offsets matter and the paper's CTR
setting has no rating scale to fit.

Prunable structure: embedding dimensions (shared by all fields), attention heads per
layer, DNN neurons per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from .base import (ArchEntry, FieldEmbedding, FieldModel, Group, TokenTables, linear_layers, mlp,
                   neuron_groups)

_MAPS = ("q", "k", "v", "r")



class AutoInt(FieldModel):
    kind = "autoint"
    CROSS_PARAMS = ("att.",)

    def __init__(self, schema: Schema, *, embed_dim: int, layers: int, heads: int | list[int],
                 head_dim: int, dnn: list[int], dropout: float, rating_mean: float = 0.0,
                 tables=None):
        super().__init__(schema, rating_mean)
        self.heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * layers
        self.embed_dim, self.head_dim, self.dropout = embed_dim, head_dim, dropout
        self.dnn_sizes = list(dnn)
        self.tokens = TokenTables(schema, tables)
        self.embedding = FieldEmbedding(schema, embed_dim, self.tokens)
        self.linear = FieldEmbedding(schema, 2, self.tokens)
        with torch.no_grad():
            for e in self.linear.emb.values():
                e.weight.zero_()
        self.m = self.embedding.n_fields
        self.att = nn.ModuleList()
        d_in = embed_dim
        for h in self.heads:
            self.att.append(nn.ModuleDict({k: nn.Linear(d_in, h * head_dim, bias=False) for k in _MAPS}))
            d_in = h * head_dim
        self.act = nn.ModuleList([nn.Identity() for _ in self.heads])  # hook point per layer
        self.att_out = self.m * d_in
        self.dnn = mlp([self.m * embed_dim] + self.dnn_sizes, dropout)
        self.hidden_dim = self.att_out + (self.dnn_sizes[-1] if self.dnn_sizes else 0)
        self.head = nn.Linear(self.hidden_dim, 2)

    def arch(self) -> dict:
        return {"embed_dim": self.embed_dim, "layers": len(self.heads), "heads": self.heads,
                "head_dim": self.head_dim, "dnn": self.dnn_sizes, "dropout": self.dropout}

    def cross(self, x: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        dk = self.head_dim
        for layer, act, h in zip(self.att, self.act, self.heads):
            q, k, v = (layer[n](x).view(b, m, h, dk).transpose(1, 2) for n in "qkv")  # [B,H,m,dk]
            a = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
            o = (a @ v).transpose(1, 2).reshape(b, m, h * dk)
            x = torch.relu(act(o + layer["r"](x)))
        return x.flatten(1)

    def structure(self) -> list[Group]:
        m, d, dk = self.m, self.embed_dim, self.head_dim
        dims = torch.arange(d).unsqueeze(1)
        sl = [(f"embedding.emb.{n}.weight", 1, dims) for n in self.embedding.emb]
        sl += [(f"att.0.{k}.weight", 1, dims) for k in _MAPS]
        if self.dnn_sizes:
            first = linear_layers(self.dnn)[0][0]
            sl.append((f"dnn.{first}.weight", 1, torch.arange(m).unsqueeze(0) * d + dims))
        groups = [Group("embedding", "embedding_dim", d, sl,
                        acts=[(f"embedding.emb.{n}", dims) for n in self.embedding.emb],
                        arch=[ArchEntry("embed_dim")])]
        for li, h in enumerate(self.heads):
            rows = torch.arange(h).unsqueeze(1) * dk + torch.arange(dk)        # [H, dk]
            sl = [(f"att.{li}.{k}.weight", 0, rows) for k in _MAPS]
            hidden = None
            if li + 1 < len(self.heads):
                sl += [(f"att.{li + 1}.{k}.weight", 1, rows) for k in _MAPS]
            else:  # the head's slot in every field's block of the flattened output
                width = h * dk
                hidden = (torch.arange(m).view(1, m, 1) * width + rows.view(h, 1, dk)).reshape(h, -1)
                sl.append(("head.weight", 1, hidden))
            groups.append(Group(f"att.{li}", "attention_head", h, sl, acts=[(f"act.{li}", rows)],
                                arch=[ArchEntry("heads", li)], hidden=hidden))
        if self.dnn_sizes:
            groups += neuron_groups("dnn", self.dnn, [("head.weight", 1, self.att_out)],
                                    arch_key="dnn", hidden_offset=self.att_out)
        return groups
