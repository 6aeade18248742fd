"""The tower student: a user built from items, per-example unit masks, mixed-width rows."""
import contextlib
import copy

import pytest
import torch
from model_zoo import tower

from pakd.models import load, save
from pakd.prune import prune_units


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_user_tower_equals_a_hand_computation(tiny_enc, alpha):
    m = tower(tiny_enc, user_fields=False, alpha=alpha)
    u = 3
    start, stop = int(m.hist_indptr[u]), int(m.hist_indptr[u + 1])
    items, ratings = m.hist_items[start:stop], m.hist_ratings[start:stop].double()
    q, b_rate, _ = m._catalogue()
    n = len(items)
    resid = ratings - 3.0 - b_rate[items]
    h = q[items].sum(0) / n ** alpha
    e = (q[items] * resid[:, None]).sum(0) / n ** alpha
    b_u = m.user_bias_scale * resid.sum() / (n + 10.0)
    i = 7
    want_logit = (m.rank_user @ h) @ (m.rank_item @ q[i]) + m._catalogue()[2][i]
    want_rating = (3.0 + b_u + b_rate[i]
                   + (m.rate_user @ e + m.rate_user_imp @ h) @ (m.rate_item @ q[i]))
    out = m(torch.tensor([u]), torch.tensor([i]))
    assert torch.allclose(out.logit[0], want_logit)
    assert torch.allclose(out.rating[0], want_rating)
    assert torch.allclose(m.score_all(torch.tensor([u]))[0, i], want_logit)


def test_a_step_leaves_its_pairs_out_of_the_histories(tiny_enc):
    m = tower(tiny_enc).train()
    u = torch.tensor([2])
    start = int(m.hist_indptr[2])
    i = m.hist_items[start:start + 1]
    free = m(u, i).rating
    m.step(u, (u, i))
    held = m(u, i).rating
    assert not torch.allclose(free, held)
    # the same as a model whose history never held that rating
    m2 = copy.deepcopy(m)
    m2.train()
    keep = torch.ones(len(m2.hist_items), dtype=torch.bool)
    keep[start] = False
    m2.hist_items = m2.hist_items[keep]
    m2.hist_ratings = m2.hist_ratings[keep]
    m2.hist_indptr = m2.hist_indptr.clone()
    m2.hist_indptr[3:] -= 1
    assert torch.allclose(m2(u, i).rating, held)


def _example_losses(m, users, u, i, r):
    """Each user's loss in a step: squared rating errors of its pairs plus minus the log
    softmax of its pairs' items over the catalogue."""
    out = m(u, i)
    s = m.score_all(users)
    inv = torch.searchsorted(users, u)
    per_pair = (out.rating - r) ** 2 - torch.log_softmax(s, 1)[inv, i]
    return torch.zeros(len(users), dtype=per_pair.dtype).index_add(0, inv, per_pair)


# which parameter entries a group's mask scales (its activations' owners)
def _scaled(m, group, unit):
    if group == "dims":
        space_id = int(m.space[unit])
        out = []
        for name, t in [(f"buckets.{b}", t) for b, t in enumerate(m.buckets)] + \
                [(f"fields.{f}", t) for f, t in m.fields.items()]:
            hit = torch.nonzero(t.cols == space_id).flatten()
            if len(hit):
                out.append((f"{name}.weight", 1, hit))
        return out
    if group == "rank_dims":
        return [("rank_user", 0, torch.tensor([unit]))]
    if group == "rate_dims":
        return [("rate_user", 0, torch.tensor([unit])), ("rate_user_imp", 0, torch.tensor([unit]))]
    if group.startswith("rows."):
        b = group.split(".")[1]
        return [(f"buckets.{b}.weight", 0, torch.tensor([unit])),
                (f"buckets.{b}.bias", 0, torch.tensor([unit]))]
    if group.startswith("bucket_dims."):
        return [(f"buckets.{group.split('.')[1]}.weight", 1, torch.tensor([unit]))]
    if group.startswith("field_dims."):
        return [(f"fields.{group.split('.', 1)[1]}.weight", 1, torch.tensor([unit]))]
    raise KeyError(group)


@contextlib.contextmanager
def _replaced(model, tensors: dict):
    """``model`` with some parameters replaced by (differentiable) tensors."""
    saved = {}
    for name, t in tensors.items():
        mod, leaf = model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]
        saved[name] = (mod, leaf, mod._parameters.pop(leaf))
        setattr(mod, leaf, t)
    try:
        yield model
    finally:
        for mod, leaf, p in saved.values():
            delattr(mod, leaf)
            mod._parameters[leaf] = p


def test_per_example_mask_gradients_equal_brute_force(tiny_enc):
    """The observed step's per-example mask gradient of a unit equals d(example loss)/d(m)
    with the unit's parameters scaled by m - computed example by example."""
    torch.manual_seed(0)
    m = tower(tiny_enc).train()
    with torch.no_grad():
        for t in m.buckets:
            t.bias.normal_(0, 0.3)
        m.rate_user_imp.normal_(0, 0.3)
    tr = tiny_enc.parts["train"]
    idx = torch.nonzero(tr.user < 3).flatten()[::3]
    u, i, r = tr.user[idx], tr.item[idx], tr.rating[idx].double()
    users = torch.unique(u)
    m.observing = True
    m.step(users, (u, i))
    _example_losses(m, users, u, i, r).sum().backward()
    grads = m.mask_gradients()
    m.observing = False
    params = dict(m.named_parameters())
    checked = 0
    for g in m.structure():
        for unit in (0, g.units - 1):
            want = []
            for n in range(len(users)):
                scale = torch.ones((), dtype=torch.float64, requires_grad=True)
                sub = {}
                for pname, dim, pos in _scaled(m, g.name, unit):
                    p = params[pname].detach()
                    factor = torch.ones_like(p)
                    factor.index_fill_(dim, pos, 0.0)
                    sub[pname] = p * factor + p * (1 - factor) * scale
                m.step(users, (u, i))
                with _replaced(m, sub):
                    loss = _example_losses(m, users, u, i, r)[n]
                want.append(torch.autograd.grad(loss, scale, allow_unused=True)[0] or 0.0)
            got = grads[g.name][:, unit]
            assert torch.allclose(got, torch.tensor(want, dtype=got.dtype), atol=1e-9), \
                (g.name, unit)
            checked += int(got.abs().sum() > 1e-6)
    assert checked >= 20           # most checks compare non-zero gradients


@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_tower_round_trips_with_mixed_widths(tiny_enc, tmp_path, seed):
    m = tower(tiny_enc).eval()
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, tiny_enc.n_users, (30,), generator=g)
    for name in [x.name for x in m.structure()]:
        units = next(x for x in m.structure() if x.name == name).units
        keep = torch.rand(units, generator=g) > 0.4
        keep[0] = True
        m = prune_units(m, name, keep)
    m.eval()
    widths = [t.weight.shape[1] for t in m.buckets]
    assert len(set(widths)) > 1 or min(widths) < m.dim       # mixed widths
    save(m, tmp_path / "t")
    back, _ = load(tmp_path / "t")
    i = torch.randint(0, tiny_enc.n_items, (30,), generator=g)
    a, b = m(u, i), back(u, i)
    assert torch.allclose(a.rating.float(), b.rating, atol=1e-5)
    assert torch.allclose(m.score_all(u).float(), back.score_all(u), atol=1e-5)


def test_a_new_user_folds_in_from_their_ratings_without_training(tiny_enc):
    """A user the student never saw, given the ratings of a known user, is that known user
    (the same vectors, the same top list); a rating of a known pair again keeps the latest;
    a new item without ratings is its side fields and can be scored at once."""
    m = tower(tiny_enc, user_fields=False)
    u, i, r = m.history_of()
    mine = u == 4
    n_users, n_items = m.schema.n_users, m.schema.n_items
    new_item_tokens = {f.name: m.tokens.get(f.name)[:1].clone() for f in m.item_fields}
    grown = m.with_ratings(torch.full((int(mine.sum()),), n_users), i[mine], r[mine],
                           n_users=n_users + 1, n_items=n_items + 1,
                           item_tokens=new_item_tokens)
    assert grown.schema.n_users == n_users + 1 and grown.schema.n_items == n_items + 1
    a = grown.score_all(torch.tensor([4, n_users]))
    assert torch.allclose(a[0], a[1])
    other = torch.ones(n_items, dtype=torch.bool)
    other[i[mine]] = False                # the items the new user rated grew more popular
    assert torch.allclose(a[0, :n_items][other], m.score_all(torch.tensor([4]))[0][other])
    both = grown(torch.tensor([4, n_users]), torch.tensor([n_items, n_items]))
    assert torch.allclose(both.rating[0], both.rating[1]) and torch.isfinite(both.logit).all()
    again = grown.with_ratings(torch.tensor([4]), i[mine][:1], torch.tensor([5.0]))
    _, _, rr = again.history_of()
    assert len(rr) == len(grown.history_of()[2])            # replaced, not appended
    start = int(again.hist_indptr[4])
    row = again.hist_items[start:int(again.hist_indptr[5])]
    assert float(again.hist_ratings[start + int((row == i[mine][0]).nonzero()[0])]) == 5.0


def _uncached(fn):
    """``fn()`` through the plain path: under autograd the inference memo is not used."""
    with torch.enable_grad():
        out = fn()
    return out.detach() if isinstance(out, torch.Tensor) else out


def _scores_equal_uncached(m, batches, pairs):
    for users in batches:
        with torch.inference_mode():
            cached = m.score_all(users)
        assert torch.equal(cached, _uncached(lambda: m.score_all(users)))
    u, i = pairs
    with torch.inference_mode():
        out = m(u, i)
    want = _uncached(lambda: m(u, i))
    assert torch.equal(out.rating, want.rating.detach())
    assert torch.equal(out.logit, want.logit.detach())
    with torch.inference_mode():        # every user's ranking and, for items 0-4, ratings
        users = torch.arange(m.schema.n_users)
        items = torch.arange(5)
        rated = m.predict(users.repeat_interleave(5), items.repeat(len(users))).view(-1, 5)
        return torch.cat([m.score_all(users), rated], 1)


def test_inference_memo_scores_equal_uncached_exactly_and_never_go_stale(tiny_enc):
    """The memo (the catalogue, its ranking vectors, each user's aggregates) gives exactly
    the scores of the plain path, whichever batches filled it, and follows every change of
    the weights or the histories: an in-place edit, load_state_dict, a rating update."""
    m = tower(tiny_enc)
    g = torch.Generator().manual_seed(0)
    n = tiny_enc.n_users
    batches = [torch.tensor([3]), torch.tensor([5, 3, 0]), torch.arange(n).flip(0),
               torch.randperm(n, generator=g)[: n // 2]]
    pairs = (torch.randint(0, n, (300,), generator=g),
             torch.randint(0, tiny_enc.n_items, (300,), generator=g))
    before = _scores_equal_uncached(m, batches, pairs)
    assert m._memo["users"][3].all()                   # filled: the memo is in use
    with torch.no_grad():                              # an optimiser-like in-place step
        m.rank_user.add_(0.25)
    after = _scores_equal_uncached(m, batches, pairs)
    assert not torch.equal(before, after)
    other = tower(tiny_enc, seed=1)
    m.load_state_dict(other.state_dict())
    loaded = _scores_equal_uncached(m, batches, pairs)
    assert torch.equal(loaded, _scores_equal_uncached(other, batches, pairs))
    assert not torch.equal(loaded, after)
    # a rating update: user 3's history changes in place, then through with_ratings
    start = int(m.hist_indptr[3])
    with torch.no_grad():
        m.hist_ratings[start] = 5.0 if m.hist_ratings[start] < 3 else 1.0
    changed = _scores_equal_uncached(m, batches, pairs)
    assert not torch.equal(changed[3], loaded[3]) and torch.equal(changed[4], loaded[4])
    grown = m.with_ratings(torch.tensor([3, n]), torch.tensor([1, 2]),
                           torch.tensor([4.5, 2.0]), n_users=n + 1)
    now = _scores_equal_uncached(grown, batches + [torch.tensor([n, 3])], pairs)
    assert not torch.equal(now[3], changed[3])
    # training drops the memo; eval builds it again from the trained weights; under
    # no_grad (not inference mode) it is kept the same way
    m.train()
    assert "_memo" not in m.__dict__
    m.eval()
    _scores_equal_uncached(m, batches, pairs)
    with torch.no_grad():
        assert torch.equal(m.score_all(batches[1]), _uncached(lambda: m.score_all(batches[1])))
        m.rank_item.mul_(2.0)
        assert torch.equal(m.score_all(batches[1]), _uncached(lambda: m.score_all(batches[1])))
    # a tensor replaced by a new one (version 0, like the one it replaces) is seen too
    fresh = tower(tiny_enc, seed=2)
    with torch.inference_mode():
        old = fresh.score_all(batches[1])
    fresh.log_pop = fresh.log_pop * 2 + 1
    with torch.inference_mode():
        new = fresh.score_all(batches[1])
    assert not torch.equal(old, new)
    assert torch.equal(new, _uncached(lambda: fresh.score_all(batches[1])))


def test_mask_gradients_are_bitwise_reproducible_on_two_threads(tiny_enc):
    """The same observed step gives the same mask gradients to the last bit: the masks'
    per-pair gathers accumulate their gradients in a fixed order (an indexed gather's
    backward adds with atomics across threads once it is large, in any order). Pairs are
    repeated so that the gathers pass torch's parallel grain (32,768 elements) and many
    pairs share an example. In float32, as students train: torch adds float64 gradients
    serially."""
    torch.manual_seed(0)
    m = tower(tiny_enc).float().train()
    tr = tiny_enc.parts["train"]
    idx = torch.nonzero(tr.user < 4).flatten().repeat(400)
    u, i, r = tr.user[idx], tr.item[idx], tr.rating[idx].float()
    users = torch.unique(u)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = []
        for _ in range(4):
            m.zero_grad(set_to_none=True)
            m.observing = True
            m.step(users, (u, i))
            _example_losses(m, users, u, i, r).sum().backward()
            got.append(m.mask_gradients())
            m.observing = False
    finally:
        torch.set_num_threads(threads)
    assert len(u) * m.dim > 32768
    for g in got[1:]:
        for name, t in g.items():
            assert torch.equal(t, got[0][name]), name
