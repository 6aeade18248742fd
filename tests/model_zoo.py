"""Shared test models: every kind, small, with random weights."""
import torch

from pakd.models import DATA_TABLES, build, build_on

KINDS = {
    "svd": {"factors": 6, "rank_factors": 5},
    "xdeepfm": {"embed_dim": 4, "cin_layers": [6, 4], "dnn": [8, 5]},
    "autoint": {"embed_dim": 4, "layers": 2, "heads": 3, "head_dim": 3, "dnn": [6]},
    "lightweight_model": {"factors": 5, "rank_factors": 3, "hidden": [7, 4]},
    "tower_student": {},
    "lightgcn": {"dim": 5, "rate_dims": 3, "layers": 2},
    "sasrec": {"dim": 6, "blocks": 2, "heads": [2, 1], "head_dim": 3, "neurons": [5, 4],
               "max_len": 4, "dropout": 0.0, "rate_dims": 3},
}


def tower(enc, seed=0, buckets=3, user_fields=True, **arch):
    """A small tower student over ``enc`` (float64, random weights, eval mode)."""
    from pakd.models.tower import tower_tables
    torch.manual_seed(seed)
    tables, data_arch = tower_tables(enc, buckets)
    side = [f for f in enc.schema.fields if f.name not in ("user_id", "item_id")
            and (user_fields or f.side == "item")]
    a = {"dim": 6, "rank_dims": 4, "rate_dims": 3, "bucket_dims": [6] * buckets,
         "field_dims": [6] * len(side), **data_arch, **arch}
    schema = enc.schema
    if not user_fields:
        import dataclasses
        schema = dataclasses.replace(schema, fields=[f for f in schema.fields
                                                     if f.side == "item" or f.name == "user_id"])
    m = build("tower_student", schema, a, tables=tables, rating_mean=3.0).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


def randomised(kind, enc, seed=0, arch=None):
    if kind == "tower_student":
        return tower(enc, seed, **(arch or {}))
    torch.manual_seed(seed)
    if kind in DATA_TABLES:          # built over the train graph / histories
        m = build_on(kind, enc, arch or KINDS[kind], rating_mean=3.0).double().eval()
    else:
        m = build(kind, enc.schema, arch or KINDS[kind], tables=enc.tables,
                  rating_mean=3.0).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


def pairs(enc, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, enc.n_users, (n,), generator=g),
            torch.randint(0, enc.n_items, (n,), generator=g))


def fitted_ease(enc, lam=10.0):
    """(EASE fitted in closed form on ``enc``'s train part, its binary history matrix)."""
    import numpy as np

    from pakd.models.ease import ease_weights
    X = enc.seen(("train",)).astype(np.float64)
    X.data[:] = 1.0
    m = build("ease", enc.schema, {"history": X.nnz}, rating_mean=3.0)
    m.set_history(X.indptr, X.indices)
    with torch.no_grad():
        m.weight.copy_(ease_weights(X, lam))
    return m, X
