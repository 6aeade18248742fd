"""Fold-in without training (issue 35): a tower student's folded users equal towers built
from the same ratings, a lightweight student's equal the closed-form least-squares solution
worked by hand, and a new item is its side fields."""
import dataclasses

import numpy as np
import pytest
import torch

from model_zoo import randomised, tower
from pakd.deploy.deployable import Deployable
from pakd.deploy.features import ItemFields
from pakd.deploy.foldin import LightweightFold
from pakd.deploy.live import LiveState
from pakd.deploy.updates import UpdateError
from pakd.errors import PakdError
from pakd.models import TowerStudent


def deployable(model, enc) -> Deployable:
    """The model with the encoding's IDs and titles; seen = the train ratings."""
    tr = enc.parts["train"]
    order = np.lexsort((tr.item.numpy(), tr.user.numpy()))
    indptr = np.zeros(enc.n_users + 1, np.int64)
    np.cumsum(np.bincount(tr.user.numpy(), minlength=enc.n_users), out=indptr[1:])
    return Deployable(model=model, name="m", path=__import__("pathlib").Path("m"),
                      user_ids=enc.user_ids.tolist(), item_ids=enc.item_ids.tolist(),
                      titles=enc.titles or [str(i) for i in enc.item_ids],
                      seen_indptr=indptr, seen_items=tr.item.numpy()[order],
                      popular=np.arange(enc.n_items),
                      seen_ratings=tr.rating.numpy()[order].astype(np.float32))


def rec(user, *pairs):
    return {"type": "ratings", "user": user, "ratings": [list(p) for p in pairs]}


NEW_ITEM = {"type": "item", "item": 500, "title": "Brand New (2009)",
            "features": {"genres": "Comedy|Horror", "year": 2009, "tags": ["funny"]}}


def applied(state, *records):
    for r in records:
        state.apply(state.check(r))
    return state


def test_tower_fold_in_equals_towers_built_from_the_same_ratings(tiny_enc):
    m = tower(tiny_enc)                        # user side fields too (gender, age)
    state = LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema))
    known, other = tiny_enc.user_ids[3], tiny_enc.user_ids[7]
    items = tiny_enc.item_ids
    applied(state, rec(known, (items[0], 5.0), (items[1], 1.0)),
            NEW_ITEM,
            rec("new-1", (items[2], 4.0), (500, 5.0), (items[2], 2.0)),   # latest of a pair wins
            rec(other, (500, 3.5)),
            rec(known, (items[0], 3.0)))                                # rated again: latest
    u_known, u_new = state.user_index(known), state.user_index("new-1")
    assert u_new == tiny_enc.n_users and state.item_index(500) == tiny_enc.n_items
    # 1. the same as a model whose history holds the ratings (with_ratings), every vector
    want = m.with_ratings(*state.live_ratings(), n_users=tiny_enc.n_users + 1,
                          n_items=tiny_enc.n_items + 1,
                          item_tokens=state._token_tensors(state.new_tokens)).frozen()
    for name in ("user_rank", "user_rate", "user_bias", "item_rank", "item_rate",
                 "item_bias", "item_rank_bias"):
        torch.testing.assert_close(getattr(state.rows, name), getattr(want, name),
                                   rtol=1e-5, atol=1e-6)    # with_ratings copies via float32
    # 2. the same as a fresh tower whose train history is built here from the ratings
    tr = tiny_enc.parts["train"]
    pairs = {(int(u), int(i)): float(r) for u, i, r in zip(tr.user, tr.item, tr.rating)}
    pairs.update({(u_known, 0): 3.0, (u_known, 1): 1.0, (u_new, 2): 2.0,
                  (u_new, tiny_enc.n_items): 5.0, (state.user_index(other), tiny_enc.n_items): 3.5})
    keys = sorted(pairs)
    n_users, n_items = tiny_enc.n_users + 1, tiny_enc.n_items + 1
    none = torch.zeros(0, dtype=torch.long)
    sd = m.with_ratings(none, none, none.double(), n_users=n_users, n_items=n_items,   # tokens
                        item_tokens=state._token_tensors(state.new_tokens)).state_dict()
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(torch.tensor([k[0] for k in keys]), minlength=n_users).cumsum(0)
    sd.update(hist_indptr=indptr, hist_items=torch.tensor([k[1] for k in keys]),
              hist_ratings=torch.tensor([pairs[k] for k in keys], dtype=torch.float64))
    counts = torch.bincount(tr.item, minlength=n_items).double()
    counts[[0, 1, 2, n_items - 1]] += torch.tensor([1.0, 1.0, 1.0, 2.0])   # distinct new pairs
    sd["log_pop"] = torch.log1p(counts)
    fresh = TowerStudent(dataclasses.replace(m.schema, n_users=n_users, n_items=n_items),
                         rating_mean=3.0, tables=None, **{**m.arch(), "history": len(keys)})
    fresh.load_state_dict(sd)
    fresh = fresh.double().eval()
    users = torch.tensor([u_known, u_new, state.user_index(other)])
    with torch.no_grad():
        torch.testing.assert_close(state.rows.score_all(users), fresh.score_all(users),
                                   rtol=1e-5, atol=1e-5)
        probe = torch.tensor([0, 1, n_items - 1])
        torch.testing.assert_close(state.rows.predict(users, probe), fresh.predict(users, probe),
                                   rtol=1e-5, atol=1e-5)
    # the rated items are seen: never recommended
    seen = set(state.seen(u_new).tolist())
    assert {2, n_items - 1} <= seen
    scores, top = state.graphs.top(np.array([u_new]), state.seen_padded(np.array([u_new])), 10)
    assert not seen & set(top[0].tolist())


def test_a_new_item_is_its_side_fields(tiny_enc):
    m = tower(tiny_enc)
    state = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                    NEW_ITEM)
    toks = state.new_tokens[0]
    v = tiny_enc.vocab
    assert toks["genres"] == [v["genres"]["values"].index("Comedy") + 1,
                              v["genres"]["values"].index("Horror") + 1]
    assert toks["year"] == [1 + sum(2009 >= e for e in v["year"]["edges"])]
    # an item with the same tokens as a known item without an ID row scores like it
    q, _, _ = state.fold.model._catalogue()
    k = q[-1] @ m.rank_item.T
    torch.testing.assert_close(state.rows.item_rank[-1], k)


def test_items_without_known_side_fields_and_bad_ratings_are_refused(tiny_enc):
    m = tower(tiny_enc)
    state = LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema))
    with pytest.raises(UpdateError, match="not in the catalogue and has no side fields") as e:
        state.check(rec(1, (99999, 4.0)))
    assert e.value.status == 404
    with pytest.raises(UpdateError, match=r"outside the model's scale 1-5"):
        state.check(rec(1, (tiny_enc.item_ids[0], 5.5)))
    with pytest.raises(UpdateError, match="none of its features is known"):
        state.check({"type": "item", "item": 777, "title": "x",
                     "features": {"genres": "Western"}})
    with pytest.raises(PakdError, match="unknown feature 'colour'"):
        state.check({"type": "item", "item": 777, "features": {"colour": "red"}})
    with pytest.raises(UpdateError, match="already in the catalogue") as e:
        state.check({"type": "item", "item": tiny_enc.item_ids[0], "features": {"year": 1}})
    assert e.value.status == 409
    assert state.check({"type": "item", "item": tiny_enc.item_ids[0], "features": {}},
                       replay=True) is None               # a replay skips a known item
    assert state.records == 0 and len(state.item_ids) == tiny_enc.n_items   # nothing changed


def test_lightweight_fold_in_is_the_closed_form_solution_by_hand(tiny_enc):
    m = randomised("lightweight_model", tiny_enc)
    fold = LightweightFold(m)
    items = torch.tensor([0, 3, 5, 11])
    ratings = torch.tensor([5.0, 2.0, 4.0, 3.5])
    p_rank, p_rate, bias = fold.solve(items, ratings)
    # by hand, in numpy: ridge regression of r - mu - b_i on [q_i, 1] ...
    with torch.no_grad():
        q, qk, c = (t.numpy() for t in m._catalogue())
        b_i = m.bias.side_of(torch.arange(tiny_enc.n_items), "item")[:, 0, 0].numpy()
    x = np.hstack([q[items.numpy()], np.ones((4, 1))])
    y = ratings.numpy() - 3.0 - b_i[items.numpy()]
    lam = LightweightFold.RIDGE
    theta = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    np.testing.assert_allclose(p_rate.numpy(), theta[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(bias), theta[-1], rtol=1e-5, atol=1e-6)
    # ... and one Newton step of the softmax loss from zero for the ranking vector
    pi = np.exp(c - c.max())
    pi /= pi.sum()
    mean = pi @ qk
    cov = (qk * pi[:, None]).T @ qk - np.outer(mean, mean)
    g = (qk[items.numpy()] - mean).sum(0)
    want = np.linalg.solve(4 * cov + lam * np.eye(len(g)), g)
    np.testing.assert_allclose(p_rank.numpy(), want, rtol=1e-5, atol=1e-6)
    # the step lowers the softmax loss of the rated items (it is a descent step)
    def loss(p):
        z = c + qk @ p
        return float(-(z[items.numpy()] - np.log(np.exp(z - z.max()).sum()) - z.max()).sum())
    assert loss(want) < loss(np.zeros_like(want))


def test_lightweight_fold_is_served_live_and_saved_as_an_ordinary_student(tiny_enc):
    m = randomised("lightweight_model", tiny_enc)
    state = LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema))
    items = tiny_enc.item_ids
    applied(state, NEW_ITEM, rec("new-1", (items[0], 5.0), (items[3], 2.0), (500, 4.0)))
    u = state.user_index("new-1")
    p_rank, p_rate, b = state.fold.solve(torch.tensor([0, 3, tiny_enc.n_items]),
                                         torch.tensor([5.0, 2.0, 4.0]))
    torch.testing.assert_close(state.rows.user_rank[u], p_rank)
    model, cat = state.saved({})
    assert model.kind == "lightweight_model" and model.schema.n_users == tiny_enc.n_users + 1
    assert cat["user_ids"][-1] == "new-1" and cat["item_ids"][-1] == 500
    users = torch.tensor([u, 2])
    with torch.no_grad():          # the saved student answers as the live one did
        torch.testing.assert_close(model.score_all(users), state.rows.score_all(users),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.score_all(torch.tensor([2]))[:, :tiny_enc.n_items],
                                   m.score_all(torch.tensor([2])))   # others unchanged
