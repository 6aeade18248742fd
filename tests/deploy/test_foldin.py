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
    # 1. the same as a model whose history holds the ratings (with_ratings) and whose
    # catalogue holds the new item as its raters placed it (the saved student), every vector
    saved, _ = state.saved({})
    want = saved.frozen()
    for name in ("user_rank", "user_rate", "user_bias", "item_rank", "item_rate",
                 "item_bias", "item_rank_bias"):
        torch.testing.assert_close(getattr(state.rows, name), getattr(want, name),
                                   rtol=1e-5, atol=1e-6)    # with_ratings copies via float32
    # the trained items, and a user who rated no new item, are what with_ratings alone gives;
    # the new item moved from its side fields (two raters, and a bias from its exposure)
    plain = m.with_ratings(*state.live_ratings(), n_users=tiny_enc.n_users + 1,
                           n_items=tiny_enc.n_items + 1,
                           item_tokens=state._token_tensors(state.new_tokens)).frozen()
    old = slice(0, tiny_enc.n_items)
    for name in ("item_rank", "item_rate", "item_bias", "item_rank_bias"):
        torch.testing.assert_close(getattr(state.rows, name)[old], getattr(plain, name)[old],
                                   rtol=1e-5, atol=1e-6)
    for name in ("user_rank", "user_rate", "user_bias"):
        torch.testing.assert_close(getattr(state.rows, name)[u_known],
                                   getattr(plain, name)[u_known], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(state.rows.item_rank[-1], plain.item_rank[-1], atol=1e-4)
    assert not torch.allclose(state.rows.item_rank_bias[-1], plain.item_rank_bias[-1])
    # 2. the same as a fresh tower whose train history is built here from the ratings
    tr = tiny_enc.parts["train"]
    pairs = {(int(u), int(i)): float(r) for u, i, r in zip(tr.user, tr.item, tr.rating)}
    pairs.update({(u_known, 0): 3.0, (u_known, 1): 1.0, (u_new, 2): 2.0,
                  (u_new, tiny_enc.n_items): 5.0, (state.user_index(other), tiny_enc.n_items): 3.5})
    keys = sorted(pairs)
    n_users, n_items = tiny_enc.n_users + 1, tiny_enc.n_items + 1
    sd = saved.state_dict()           # the weights, tokens and the new item's row; not the history
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(torch.tensor([k[0] for k in keys]), minlength=n_users).cumsum(0)
    sd.update(hist_indptr=indptr, hist_items=torch.tensor([k[1] for k in keys]),
              hist_ratings=torch.tensor([pairs[k] for k in keys], dtype=torch.float64))
    counts = torch.bincount(tr.item, minlength=n_items).double()
    counts[[0, 1, 2, n_items - 1]] += torch.tensor([1.0, 1.0, 1.0, 2.0])   # distinct new pairs
    sd["log_pop"] = torch.log1p(counts)
    fresh = TowerStudent(dataclasses.replace(m.schema, n_users=n_users, n_items=n_items),
                         rating_mean=3.0, tables=None, **{**saved.arch(), "history": len(keys)})
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


def test_no_update_scores_exactly_as_the_student(tiny_enc):
    """Fold-in changes nothing until an update arrives: the live vectors and a student
    saved without updates score bit for bit as the student itself."""
    for m in (tower(tiny_enc), randomised("lightweight_model", tiny_enc)):
        m = m.float()
        state = LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema))
        users = torch.arange(tiny_enc.n_users)
        pairs = (users.repeat_interleave(tiny_enc.n_items),
                 torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users))
        saved, _ = state.saved({})
        with torch.no_grad():
            want, rating = m.score_all(users), m.predict(*pairs)
            assert torch.equal(saved.score_all(users), want)
            assert torch.equal(saved.predict(*pairs), rating)
            if m.kind == "tower_student":
                assert torch.equal(state.rows.score_all(users), want)
                assert torch.equal(state.rows.predict(*pairs), rating)


def test_a_new_item_starts_typical_then_follows_its_ratings_and_exposure(tiny_enc):
    """A new item's ranking bias: its side fields' plus w log(1 + n), n the gamma-Poisson
    estimate of its count over the train window from its ratings and exposure."""
    m = tower(tiny_enc)
    i = tiny_enc.n_items
    counts = torch.arange(i).double() ** 2 % 37 + 1         # overdispersed, as real counts are
    m.log_pop.copy_(torch.log1p(counts))
    state = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                    NEW_ITEM)
    fold = state.fold
    c = counts
    a = c.mean() ** 2 / (c.var() - c.mean())                 # negative binomial moments
    a, b, n = float(a), float(a / c.mean()), float(c.sum())
    np.testing.assert_allclose(fold.prior, [a, b, n], rtol=1e-9)
    side = fold._side[i].double()
    w = float(m.pop_weight.detach())

    def bias():
        return float(state.rows.item_rank_bias[i])
    assert bias() == pytest.approx(float(side) + w * np.log1p(a / b), rel=1e-5)  # the mean
    items = tiny_enc.item_ids
    applied(state, rec(tiny_enc.user_ids[0], (items[0], 4.0), (items[1], 4.0)))
    assert bias() == pytest.approx(float(side) + w * np.log1p(a / (b + 2 / n)), rel=1e-5)
    before = bias()
    applied(state, rec(tiny_enc.user_ids[1], (500, 4.0)))    # rated soon after it arrived
    assert state.clock == 3
    assert bias() == pytest.approx(float(side) + w * np.log1p((a + 1) / (b + 3 / n)), rel=1e-5)
    assert bias() > before


def test_a_new_item_moves_toward_its_raters_by_one_newton_step(tiny_enc):
    """The rater-based vector of a new item, by hand: one Newton step of the log-likelihood
    that its rater is the one who rated it (users weighted by their ratings), from its side
    fields' vector, under a Gaussian prior with the trained ID rows' second moment; the
    rater's vector leaves the item out."""
    m = tower(tiny_enc, user_fields=False)
    state = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                    NEW_ITEM)
    i, who = tiny_enc.n_items, tiny_enc.user_ids[2]
    applied(state, rec(who, (500, 5.0), (tiny_enc.item_ids[0], 2.0)))
    u = state.user_index(who)
    with torch.no_grad():
        q_side = m.with_ratings(*state.live_ratings(), n_items=i + 1, item_tokens=state.
                                _token_tensors(state.new_tokens))._catalogue()[0][i].numpy()
        plain = m.with_ratings(*state.live_ratings(), n_items=i + 1,     # before it moved
                               item_tokens=state._token_tensors(state.new_tokens)).frozen()
        it, ra = state._fold_ratings(u)
        keep = it != i
        loo = m.users_from(torch.tensor([u]), torch.zeros(int(keep.sum()), dtype=torch.long),
                           torch.from_numpy(it[keep]), torch.from_numpy(ra[keep]))[0][0].numpy()
    W = m.rank_item.detach().numpy()
    z = plain.user_rank.numpy() @ W
    act = state.n_rated / state.n_rated.sum()
    assert state.n_rated[u] == len(it)                 # train ratings and the two new
    mean = act @ z
    cov = (z * act[:, None]).T @ z - np.outer(mean, mean)
    sec, n_rows = np.zeros((m.dim, m.dim)), 0
    for t in m.buckets[:3]:                            # the trained ID rows
        rows = np.zeros((len(t.owner), m.dim))
        rows[:, m._pos(t.cols).numpy()] = t.weight.detach().numpy()
        sec, n_rows = sec + rows.T @ rows, n_rows + len(t.owner)
    q = q_side + np.linalg.solve(cov + np.linalg.inv(sec / n_rows), loo @ W - mean)
    np.testing.assert_allclose(state.rows.item_rank[i].numpy(), q @ W.T, rtol=1e-6, atol=1e-9)
    # the step raises the likelihood that this user is the one who rated it
    def loglik(v):
        s = z @ v + np.log(act)
        return s[u] - np.log(np.exp(s - s.max()).sum()) - s.max()
    assert loglik(q) > loglik(q_side)
    # the rater was rebuilt from the moved item: what a tower from their ratings gives
    with torch.no_grad():
        p = state.fold.model.users_from(torch.tensor([u]), torch.zeros(len(it), dtype=torch.long),
                                        torch.from_numpy(it), torch.from_numpy(ra))[0]
    torch.testing.assert_close(state.rows.user_rank[u], p[0])
    assert not torch.allclose(p[0], plain.user_rank[u])


def test_a_grown_student_carries_on_as_the_live_one(tiny_enc, tmp_path):
    """Fold some updates, save (what `pakd update` writes), load, fold the rest: the same
    vectors as one live state that folded them all."""
    from pakd.deploy.service import load_live
    from pakd.models import save
    from pakd.rundir import RunDir
    import json
    m = tower(tiny_enc).float()
    items, users = tiny_enc.item_ids, tiny_enc.user_ids
    first = [NEW_ITEM, rec(users[0], (500, 5.0), (items[1], 3.0)), rec("n1", (500, 4.0))]
    rest = [rec(users[3], (500, 2.0), (items[4], 4.0)), rec("n2", (items[2], 1.0)),
            {**NEW_ITEM, "item": 501}, rec(users[4], (501, 5.0), (500, 3.0))]
    whole = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                    *first, *rest)
    part = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                   *first)
    model, catalog = part.saved({})
    save(model, tmp_path / "grown")
    RunDir.catalog_of(tmp_path / "grown").write_text(json.dumps(catalog))
    grown = load_live(tmp_path / "grown")
    assert grown.clock == part.clock and grown.exposed == part.exposed
    torch.testing.assert_close(grown.rows.item_rank_bias, part.rows.item_rank_bias)
    applied(grown, *rest)
    assert grown.item_ids == whole.item_ids and grown.user_ids == whole.user_ids
    for name in ("user_rank", "user_rate", "user_bias", "item_rank", "item_rate",
                 "item_bias", "item_rank_bias"):
        torch.testing.assert_close(getattr(grown.rows, name), getattr(whole.rows, name),
                                   rtol=1e-4, atol=1e-5)


def test_placing_a_new_item_patches_the_memoised_catalogue_to_the_last_bit(tiny_enc):
    """Each rating of a new item writes its row (`TowerStudent.set_item_row`), which patches
    the inference memo's catalogue in place of a rebuild: it must equal a rebuild from the
    weights, bit for bit, and so must the scores."""
    import copy
    m = tower(tiny_enc, user_fields=False)
    state = applied(LiveState(deployable(m, tiny_enc), ItemFields(tiny_enc.vocab, m.schema)),
                    NEW_ITEM)
    live = state.fold.model
    with torch.no_grad():
        live.score_all(torch.tensor([0]))                 # memoise catalogue and rank_items
    for n, who in enumerate(tiny_enc.user_ids[2:6]):
        applied(state, rec(who, (500, 5.0 - n)))
        with torch.no_grad():
            patched = live._catalogue()
            fresh = copy.deepcopy(live)                    # no memo: rebuilt from weights
            for a, b in zip(patched, fresh._catalogue()):
                assert torch.equal(a, b)
            users = torch.arange(4)
            assert torch.equal(live.score_all(users), fresh.score_all(users))
    t = live.buckets[state.fold.table]
    assert bool(t.weight.abs().sum() > 0)                  # the row was written
