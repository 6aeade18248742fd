"""SASRec: causal attention, histories in time order, short histories, its objective."""
import numpy as np
import pytest
import torch
from model_zoo import randomised

from pakd.data.schema import FieldSpec, Schema
from pakd.models import build
from pakd.train.sequence import windows


def test_causal_mask_lets_no_position_see_a_later_item(tiny_enc):
    m = randomised("sasrec", tiny_enc, arch={"dim": 6, "blocks": 2, "heads": 2, "head_dim": 3,
                                             "neurons": 5, "max_len": 6, "dropout": 0.0,
                                             "rate_dims": 3})
    tokens = torch.tensor([[0, 3, 7, 1, 9, 4], [5, 2, 8, 6, 1, 3]])
    base = m.encode(tokens)
    for t in range(1, 6):                       # change the item at position t
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] % tiny_enc.n_items) + 1
        out = m.encode(changed)
        assert torch.allclose(out[:, :t], base[:, :t], atol=1e-12), t   # earlier: unchanged
        assert not torch.allclose(out[:, t:], base[:, t:]), t           # from t on: changed


def test_history_is_each_users_last_items_in_time_order(tiny_enc):
    m = randomised("sasrec", tiny_enc)                 # max_len 4
    tr = tiny_enc.parts["train"]
    for u in range(tiny_enc.n_users):
        mine = tr.user == u
        order = np.lexsort((tr.item[mine].numpy(), tr.timestamp[mine].numpy()))
        want = tr.item[mine][torch.from_numpy(order)][-4:] + 1
        got = m.sequences(torch.tensor([u]))[0]
        assert torch.equal(got[4 - len(want):], want) and not got[:4 - len(want)].any()
    # the time order is not the item order in this data, so the check above means something
    u0 = tr.item[tr.user == 0]
    assert not torch.equal(m.hist_items[:len(u0)], torch.sort(u0).values)


def _short_histories():
    """3 users x 4 items: user 0 rated items 0, 1, 2 (in that order), user 1 only item 3,
    user 2 nothing in train."""
    schema = Schema([FieldSpec("user_id", "user", "single", 4, 1, "id"),
                     FieldSpec("item_id", "item", "single", 5, 1, "id")], 3, 4, 1.0, 5.0)
    tables = {"hist_indptr": torch.tensor([0, 3, 4, 4]), "hist_items": torch.tensor([0, 1, 2, 3])}
    torch.manual_seed(0)
    m = build("sasrec", schema, {"dim": 4, "blocks": 1, "heads": 1, "head_dim": 4, "neurons": 4,
                                 "max_len": 3, "dropout": 0.0, "rate_dims": 2, "history": 4},
              tables=tables, rating_mean=3.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 1.0)
    return m.eval()


def test_one_item_and_empty_histories_have_their_documented_fallback():
    m = _short_histories()
    seq = m.sequences(torch.arange(3))
    assert seq.tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 0]]
    s = m.score_all(torch.arange(3))
    assert torch.isfinite(s).all()
    c = m.item_rank_bias.weight[:, 0]
    assert torch.allclose(s[2], c)                       # empty: the items' biases alone
    assert not torch.allclose(s[1], c)                   # one item: read from that item
    # the one-item user's vector is the one-position sequence's output
    assert torch.allclose(m.user_vectors(torch.tensor([1])), m.encode(torch.tensor([[4]]))[:, -1])
    out = m(torch.tensor([2, 1]), torch.tensor([0, 1]))
    assert torch.isfinite(out.rating).all() and torch.isfinite(out.logit).all()


def test_windows_cut_sequences_from_their_end():
    indptr = torch.tensor([0, 5, 6, 6])
    items = torch.tensor([10, 11, 12, 13, 14, 20])       # user 1 has one item, user 2 none
    tok, tgt = windows(indptr, items, 3)
    # user 0: inputs 10..13 predict 11..14; newest window first, the first one padded
    assert tok.tolist() == [[12, 13, 14], [0, 0, 11]]
    assert tgt.tolist() == [[12, 13, 14], [-1, -1, 11]]
    assert windows(torch.tensor([0, 1]), torch.tensor([3]), 3)[0].shape == (0, 3)


@pytest.mark.parametrize("loss", [{"ranking_loss": "full", "epochs": 8, "lr": 0.05},
                                  {"ranking_loss": "softmax", "negatives": 16, "epochs": 15,
                                   "lr": 0.03}])
def test_next_item_objective_learns_a_planted_order(loss, tiny_enc):
    """Every user's sequence walks the catalogue in steps of one: after training (on the
    whole catalogue, or on shared sampled negatives), the item after each user's last one
    ranks first for most users."""
    import dataclasses

    from pakd.config import RunConfig
    from pakd.data.encoding import Part
    from pakd.models import build_on
    from pakd.train.sequence import fit_sequence
    n_items, users = tiny_enc.n_items, 24
    g = torch.Generator().manual_seed(0)
    start = torch.randint(0, n_items, (users,), generator=g)
    u = torch.arange(users).repeat_interleave(8)
    step = torch.arange(8).repeat(users)
    item = (start[u] + step) % n_items
    train = Part(u, item, torch.full((len(u),), 4.0), step)
    nxt = (start + 8) % n_items
    valid = Part(torch.arange(users), nxt, torch.full((users,), 4.0), torch.full((users,), 9))
    schema = dataclasses.replace(tiny_enc.schema, n_users=users)
    enc = dataclasses.replace(tiny_enc, schema=schema, user_ids=np.arange(users),
                              parts={"train": train, "valid": valid, "test": valid}, _seen={})
    torch.manual_seed(0)
    s = RunConfig().sasrec.model_copy(update={"batch_size": 64, **loss})
    s.patience = s.epochs
    m = build_on("sasrec", enc, {"dim": 16, "blocks": 1, "heads": 1, "head_dim": 16,
                                 "neurons": 16, "max_len": 4, "dropout": 0.0, "rate_dims": 2},
                 rating_mean=4.0)
    res = fit_sequence(m, enc, s, quiet=True)
    hit = (m.score_all(torch.arange(users)).argmax(1) == nxt).float().mean()
    assert hit > 0.8, (hit, res.history[-1])
    assert res.best_valid["ranking"] < -0.5


def test_losses_the_sequence_objective_cannot_use_are_refused(tiny_enc):
    from pakd.config import RunConfig
    from pakd.errors import PakdError
    from pakd.train.sequence import fit_sequence
    m = randomised("sasrec", tiny_enc).float()
    s = RunConfig().sasrec.model_copy(update={"ranking_loss": "bpr"})
    with pytest.raises(PakdError, match="full .* or softmax"):
        fit_sequence(m, tiny_enc, s, quiet=True)
