"""From a split (original IDs) and side tables to index tensors the models consume.

User and item indices follow the sorted original IDs of the split, so the same split always
gives the same encoding. Side values become tokens (1..V, 0 = missing) in sorted order;
numeric columns are cut into quantile buckets computed on the vocabulary's rows. Each side
field's vocabulary is kept (`Encoded.vocab`: its sorted values, or its bucket edges), so a
value met later - a new item's genres - becomes the same token (`pakd.deploy.features`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .dataset import Dataset
from .schema import FieldSpec, Schema
from .splits import PARTS, Split


@dataclass
class Part:
    user: torch.Tensor    # long [n]
    item: torch.Tensor    # long [n]
    rating: torch.Tensor  # float [n]
    # Unix seconds [n] (0 where the data had none); None for parts built without them.
    # Sequence models order each user's train history by it
    timestamp: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.user.numel())


@dataclass
class Encoded:
    schema: Schema
    user_ids: np.ndarray
    item_ids: np.ndarray
    tables: dict[str, torch.Tensor]          # field name -> long [n_side, max_len]
    parts: dict[str, Part]
    titles: list[str] | None = None
    vocab: dict[str, dict] = field(default_factory=dict)   # side field -> kind, values/edges
    _seen: dict = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def seen(self, parts: tuple[str, ...]):
        """Sparse user x item matrix (CSR, bool) of the ratings in ``parts``."""
        import scipy.sparse as sp
        key = tuple(parts)
        if key not in self._seen:
            us = np.concatenate([self.parts[p].user.numpy() for p in parts])
            it = np.concatenate([self.parts[p].item.numpy() for p in parts])
            m = sp.csr_matrix((np.ones(len(us), dtype=bool), (us, it)),
                              shape=(self.n_users, self.n_items))
            m.sum_duplicates()
            self._seen[key] = m
        return self._seen[key]

    def user_index(self, original_id) -> int:
        pos = np.searchsorted(self.user_ids, original_id)
        if pos >= len(self.user_ids) or self.user_ids[pos] != original_id:
            raise KeyError(original_id)
        return int(pos)


def encode(ds: Dataset, split: Split, *, n_buckets: int = 10, max_tokens: int = 16) -> Encoded:
    """Index tensors of each part and the side fields' token tables. Under a time-ordered
    split the fields built from events (tags) see only the events up to the train cut."""
    cut = split.train_cut()
    if cut is not None and ds.tag_events is not None:
        from .movielens import tags_as_of
        ds = tags_as_of(ds, cut)
    frame = split.frame
    user_ids = np.sort(pd.unique(frame["user"]))
    item_ids = np.sort(pd.unique(frame["item"]))
    uidx = pd.Index(user_ids)
    iidx = pd.Index(item_ids)
    parts = {}
    for p in PARTS:
        f = frame[frame["part"] == p]
        parts[p] = Part(torch.as_tensor(uidx.get_indexer(f["user"]), dtype=torch.long),
                        torch.as_tensor(iidx.get_indexer(f["item"]), dtype=torch.long),
                        torch.tensor(f["rating"].to_numpy(np.float32)),
                        torch.tensor(f["timestamp"].fillna(0).to_numpy(np.int64)))
    fields = [FieldSpec("user_id", "user", "single", len(user_ids) + 1, 1, "id"),
              FieldSpec("item_id", "item", "single", len(item_ids) + 1, 1, "id")]
    tables = {"user_id": torch.arange(1, len(user_ids) + 1).unsqueeze(1),
              "item_id": torch.arange(1, len(item_ids) + 1).unsqueeze(1)}
    vocab = {}
    for side, table, feats, ids in (("user", ds.users, ds.user_features, user_ids),
                                    ("item", ds.items, ds.item_features, item_ids)):
        if table is None:
            continue
        rows = table.reindex(ids)
        for name, kind in feats.items():
            tok, spec, vocab[name] = _tokens(rows[name], kind, n_buckets=n_buckets,
                                             max_tokens=max_tokens)
            spec.name, spec.side = name, side
            fields.append(spec)
            tables[name] = tok
    titles = None
    if ds.items is not None and "title" in ds.items.columns:
        titles = ds.items["title"].reindex(item_ids).fillna("").astype(str).tolist()
    schema = Schema(fields, len(user_ids), len(item_ids),
                    float(ds.rating_scale[0]), float(ds.rating_scale[1]))
    return Encoded(schema, user_ids, item_ids, tables, parts, titles, vocab)


def _tokens(col: pd.Series, kind: str, *, n_buckets: int, max_tokens: int):
    if kind == "multi":
        lists = [v if isinstance(v, (list, tuple)) else [] for v in col]
        vocab = sorted({t for toks in lists for t in toks})
        pos = {t: i + 1 for i, t in enumerate(vocab)}
        width = max(1, min(max_tokens, max((len(x) for x in lists), default=1)))
        out = np.zeros((len(lists), width), dtype=np.int64)
        for r, toks in enumerate(lists):
            ids = [pos[t] for t in toks][:width]
            out[r, :len(ids)] = ids
        return (torch.from_numpy(out), FieldSpec("", "item", "multi", len(vocab) + 1, width, "multi"),
                {"kind": "multi", "values": [str(t) for t in vocab]})
    if kind == "numeric":
        x = pd.to_numeric(col, errors="coerce")
        qs = np.unique(np.nanquantile(x.dropna(), np.linspace(0, 1, n_buckets + 1)[1:-1])) \
            if x.notna().any() else np.array([])
        b = np.searchsorted(qs, x.fillna(np.nan).to_numpy(), side="right") + 1
        b = np.where(x.isna().to_numpy(), 0, b)
        return (torch.as_tensor(b, dtype=torch.long).unsqueeze(1),
                FieldSpec("", "item", "single", len(qs) + 2, 1, f"numeric ({len(qs) + 1} buckets)"),
                {"kind": "numeric", "edges": [float(q) for q in qs]})
    vals = col.astype(object).where(col.notna(), None)
    vocab = sorted({str(v) for v in vals if v is not None})
    pos = {t: i + 1 for i, t in enumerate(vocab)}
    tok = np.array([0 if v is None else pos[str(v)] for v in vals], dtype=np.int64)
    return (torch.from_numpy(tok).unsqueeze(1),
            FieldSpec("", "item", "single", len(vocab) + 1, 1, "categorical"),
            {"kind": "categorical", "values": vocab})
