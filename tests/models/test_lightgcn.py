"""LightGCN: propagation against a dense hand computation, isolated nodes, export."""
import json

import pytest
import torch
from model_zoo import randomised

from pakd.data.schema import FieldSpec, Schema
from pakd.models import build, load, save

# 4 users x 5 items; item 4 has no train rating (isolated), user 3 rated one item
EDGES = {0: [0, 1], 1: [1, 2, 3], 2: [0, 3], 3: [2]}


def four_users(layers=2, dim=3):
    schema = Schema([FieldSpec("user_id", "user", "single", 5, 1, "id"),
                     FieldSpec("item_id", "item", "single", 6, 1, "id")], 4, 5, 1.0, 5.0)
    indptr = torch.tensor([0, 2, 5, 7, 8])
    items = torch.tensor([i for u in range(4) for i in EDGES[u]])
    torch.manual_seed(0)
    m = build("lightgcn", schema, {"dim": dim, "rate_dims": 2, "layers": layers,
                                   "history": len(items)},
              tables={"hist_indptr": indptr, "hist_items": items}, rating_mean=3.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 1.0)
    return m.eval()


def dense_propagation(E, layers):
    """By hand: A over users then items, A_hat = D^-1/2 A D^-1/2, mean of E, A_hat E, ..."""
    n = E.shape[0]
    A = torch.zeros(n, n, dtype=torch.float64)
    for u, items in EDGES.items():
        for i in items:
            A[u, 4 + i] = A[4 + i, u] = 1.0
    deg = A.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    A_hat = inv[:, None] * A * inv[None, :]
    out, x = E.clone(), E.clone()
    for _ in range(layers):
        x = A_hat @ x
        out = out + x
    return out / (layers + 1)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagation_equals_a_dense_hand_computation(layers):
    m = four_users(layers)
    want = dense_propagation(m.rank.weight.detach(), layers)
    assert torch.allclose(m.rank.table(), want, atol=1e-12)
    with torch.no_grad():                       # the cached table (inference) is the same
        assert torch.allclose(m.rank.table(), want, atol=1e-12)
    # outputs read the propagated vectors: logit = c_i + e_u . e_i
    u, i = torch.tensor([0, 1, 3, 2]), torch.tensor([1, 4, 2, 0])
    logit = m(u, i).logit
    c = m.item_rank_bias.weight[:, 0]
    assert torch.allclose(logit, c[i] + (want[u] * want[4 + i]).sum(1))
    assert torch.allclose(m.score_all(u)[torch.arange(4), i], logit)
    if layers:                                   # propagation really mixes the rows
        assert not torch.allclose(want, m.rank.weight.detach() , atol=1e-3)


def test_isolated_item_is_its_own_row_and_the_cache_follows_the_weights():
    m = four_users(layers=2)
    with torch.no_grad():
        t = m.rank.table()
        assert torch.allclose(t[4 + 4], m.rank.weight[4 + 4] / 3)   # no edge: E_0 / (K+1)
        assert torch.isfinite(m.score_all(torch.arange(4))).all()
        m.rank.weight[0] += 1.0                  # a changed weight is seen at once
        assert not torch.allclose(m.rank.table(), t)


def test_frozen_answers_what_the_model_answers(tiny_enc):
    m = randomised("lightgcn", tiny_enc)
    f = m.frozen()
    u = torch.arange(tiny_enc.n_users).repeat_interleave(tiny_enc.n_items)
    i = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    a, b = m(u, i), f(u, i)
    assert torch.allclose(a.rating, b.rating) and torch.allclose(a.logit, b.logit)
    assert torch.allclose(m.score_all(torch.arange(5)), f.score_all(torch.arange(5)))


def test_save_load_keeps_the_graph(tiny_enc, tmp_path):
    m = randomised("lightgcn", tiny_enc).float()
    save(m, tmp_path / "g")
    back, _ = load(tmp_path / "g")
    assert torch.equal(back.hist_items, m.hist_items)
    users = torch.arange(tiny_enc.n_users)
    assert torch.allclose(back.score_all(users), m.score_all(users))


@pytest.mark.slow                   # an export: `make test-slow`, like tests/deploy
@pytest.mark.parametrize("kind", ["lightgcn", "sasrec"])
def test_exports_to_onnx_with_parity(kind, tiny_enc, tmp_path):
    pytest.importorskip("onnxruntime")
    from pakd.deploy.deployable import load_deployable
    from pakd.deploy.onnx_export import export
    model = randomised(kind, tiny_enc).float()
    stem = tmp_path / kind
    save(model, stem)
    (tmp_path / f"{kind}.catalog.json").write_text(json.dumps(
        {"user_ids": list(range(tiny_enc.n_users)), "item_ids": list(range(tiny_enc.n_items)),
         "titles": None}))
    meta = export(load_deployable(stem), tmp_path / "o", k=5, bench_seconds=0.02)
    assert meta["parity"]["passed"], meta["parity"]
