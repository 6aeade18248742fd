import pytest
import torch
import torch.nn.functional as F

from pakd.config import TEACHERS, RunConfig
from pakd.config.sections import FitSettings
from pakd.errors import PakdError
from pakd.models import build
from pakd.train import Loss, NegativeSampler, fit, ranking_loss


def settings(kind, **over):
    """The member's training settings (its config section) with ``over`` changed."""
    return getattr(RunConfig(), kind).model_copy(update=over)


def test_negative_sampler_knows_train_pairs(tiny_enc):
    s = NegativeSampler(tiny_enc)
    tr = tiny_enc.parts["train"]
    assert s.is_seen(tr.user, tr.item).all()
    te = tiny_enc.parts["test"]
    assert not s.is_seen(te.user, te.item).any()
    neg = s.sample(tr.user[:50], 3, torch.Generator().manual_seed(0))
    assert neg.shape == (50, 3) and neg.max() < tiny_enc.n_items


def test_ranking_losses_hand_values():
    pos, neg = torch.tensor([2.0]), torch.tensor([[0.0, 1.0]])
    bce = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.sigmoid(torch.tensor(0.0)))
            + torch.log(torch.sigmoid(torch.tensor(-1.0)))) / 3
    assert torch.isclose(ranking_loss(pos, neg, "bce"), bce)
    bpr = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.sigmoid(torch.tensor(1.0)))) / 2
    assert torch.isclose(ranking_loss(pos, neg, "bpr"), bpr)
    sm = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor([2.0, 0.0, 1.0])).sum()))
    assert torch.isclose(ranking_loss(pos, neg, "softmax"), sm)


def test_fit_lowers_validation_loss(tiny_enc):
    torch.manual_seed(0)
    m = build("svd", tiny_enc.schema, {"factors": 4, "rank_factors": 4}, rating_mean=3.0)
    res = fit(m, tiny_enc, settings("svd", epochs=30, lr=0.05, batch_size=64, patience=30,
                                      monitor="loss", ranking_loss="softmax"), quiet=True)
    first = res.history[0]["valid_loss"]
    assert res.best_valid["all"] < first
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_resume_continues_exactly(tiny_enc, tmp_path):
    cfg = settings("xdeepfm", epochs=4, lr=0.01, batch_size=64, patience=10, negatives=2)
    arch = {"embed_dim": 4, "cin_layers": [4, 4], "dnn": [8]}

    def fresh():
        torch.manual_seed(1)
        return build("xdeepfm", tiny_enc.schema, arch, tables=tiny_enc.tables, rating_mean=3.0)

    straight = fresh()
    fit(straight, tiny_enc, cfg, seed=5, quiet=True)
    part = fresh()
    fit(part, tiny_enc, cfg.model_copy(update={"epochs": 2}), seed=5, checkpoint=tmp_path / "x",
        state=tmp_path / "x.state.pt", quiet=True)
    resumed = fresh()
    res = fit(resumed, tiny_enc, cfg, seed=5, checkpoint=tmp_path / "x",
              state=tmp_path / "x.state.pt", resume=True, quiet=True)
    assert len(res.history) == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # the state file loads without unpickling arbitrary objects
    torch.load(tmp_path / "x.state.pt", weights_only=True)


def test_per_task_keeper_gives_each_output_its_best_epoch(tiny_enc):
    """SVD's rating and ranking factors are disjoint: the returned model must reach the best
    valid RMSE and the best full-catalogue valid NDCG@10 of the whole history at once."""
    from pakd.train import validation_loss
    torch.manual_seed(0)
    m = build("svd", tiny_enc.schema, {"factors": 4, "rank_factors": 4}, rating_mean=3.0)
    cfg = settings("svd", epochs=25, lr=0.1, batch_size=64, patience=25, negatives=3, l2=0.0,
                   monitor="per_task")
    res = fit(m, tiny_enc, cfg, quiet=True)
    best_rmse = min(h["valid_rmse"] for h in res.history)
    best_ndcg = max(h["valid_ndcg@10"] for h in res.history)
    assert res.best_epochs["rating"] != res.best_epochs["ranking"]
    negs = NegativeSampler(tiny_enc).sample(
        tiny_enc.parts["valid"].user, 0, torch.Generator().manual_seed(7919))
    val = validation_loss(m, tiny_enc, Loss(cfg.ranking_loss, 1.0, 1.0), negs, ndcg=True)
    assert val["valid_rmse"] == pytest.approx(best_rmse, rel=1e-5)
    assert val["valid_ndcg@10"] == pytest.approx(best_ndcg, rel=1e-5)


def test_full_softmax_is_the_cross_entropy_over_the_catalogue(tiny_enc):
    from pakd.train import step_losses
    torch.manual_seed(0)
    m = build("svd", tiny_enc.schema, {"factors": 4, "rank_factors": 4}, rating_mean=3.0)
    tr = tiny_enc.parts["train"]
    u, i, r = tr.user[:30], tr.item[:30], tr.rating[:30]
    _, _, rank = step_losses(m, u, i, r, torch.zeros(30, 0, dtype=torch.long),
                             Loss("full", 1.0, 1.0))
    with torch.no_grad():
        logits = torch.stack([m.pair_logits(uu.repeat(tiny_enc.n_items),
                                            torch.arange(tiny_enc.n_items)) for uu in u])
    assert rank.item() == pytest.approx(F.cross_entropy(logits, i).item(), rel=1e-5)
    x = build("xdeepfm", tiny_enc.schema, {"embed_dim": 4, "cin_layers": [4], "dnn": [4]},
              tables=tiny_enc.tables, rating_mean=3.0)
    with pytest.raises(PakdError, match="dot-product"):
        fit(x, tiny_enc, settings("xdeepfm", ranking_loss="full"), quiet=True)


def test_every_teacher_section_holds_every_fit_setting():
    for kind in TEACHERS:
        section = getattr(RunConfig(), kind)
        assert all(hasattr(section, k) for k in FitSettings.model_fields), kind


def test_micro_batches_give_the_step_gradient(tiny_enc):
    from pakd.train import backward_step
    torch.manual_seed(0)
    m = build("xdeepfm", tiny_enc.schema, {"embed_dim": 4, "cin_layers": [4, 4], "dnn": [8]},
              tables=tiny_enc.tables, rating_mean=3.0).double()
    tr = tiny_enc.parts["train"]
    u, i, r = tr.user[:37], tr.item[:37], tr.rating[:37].double()
    neg = NegativeSampler(tiny_enc).sample(u, 2, torch.Generator().manual_seed(0))
    loss = Loss("softmax", 1.0, 0.7, l2=0.1)
    whole = backward_step(m, u, i, r, neg, loss, 0)
    g_whole = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    parts = backward_step(m, u, i, r, neg, loss, 8)
    assert parts == pytest.approx(whole, rel=1e-10)
    for n, p in m.named_parameters():
        assert torch.allclose(p.grad, g_whole[n], rtol=1e-9, atol=1e-12), n


def test_negatives_through_the_ranking_path_give_the_same_loss(tiny_enc):
    """SVD scores its negatives through pair_logits alone; the loss equals the one of a
    single forward over rated pairs and negatives."""
    from pakd.models.base import RecModel
    from pakd.train import step_losses
    torch.manual_seed(0)
    m = build("svd", tiny_enc.schema, {"factors": 4, "rank_factors": 3}, rating_mean=3.0).double()
    tr = tiny_enc.parts["train"]
    u, i, r = tr.user[:20], tr.item[:20], tr.rating[:20].double()
    neg = NegativeSampler(tiny_enc).sample(u, 3, torch.Generator().manual_seed(0))
    loss = Loss("softmax", 1.0, 1.0, l2=0.05)
    split = step_losses(m, u, i, r, neg, loss)

    class OneForward(type(m)):
        pair_logits = RecModel.pair_logits
    m.__class__ = OneForward
    joint = step_losses(m, u, i, r, neg, loss)
    for a, b in zip(split, joint):
        assert torch.allclose(a, b, rtol=1e-12), (a, b)


def test_logq_correction_matches_a_hand_computation():
    """Sampled softmax with popularity-drawn negatives: every logit minus log Q of its item."""
    import math
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.5, 2.0]])
    q_pos, q_neg = torch.tensor([0.1]), torch.tensor([[0.2, 0.05]])
    got = ranking_loss(pos, neg, "softmax", (q_pos.log(), q_neg.log())).item()
    z = [1.0 - math.log(0.1), 0.5 - math.log(0.2), 2.0 - math.log(0.05)]
    want = -(z[0] - math.log(sum(math.exp(v) for v in z)))
    assert got == pytest.approx(want, rel=1e-6)
    # uniform draws: the correction is a constant shift and changes nothing
    flat = torch.full((1, 2), math.log(0.25))
    assert ranking_loss(pos, neg, "softmax", (torch.tensor([math.log(0.25)]), flat)).item() == \
        pytest.approx(ranking_loss(pos, neg, "softmax").item(), rel=1e-6)


def test_popularity_sampler_draws_in_proportion_to_train_counts(tiny_enc):
    s = NegativeSampler(tiny_enc, popularity=True)
    counts = torch.bincount(tiny_enc.parts["train"].item, minlength=tiny_enc.n_items).double() + 1
    every = torch.arange(tiny_enc.n_items)
    assert torch.allclose(s.log_q(torch.zeros_like(every), every).double().exp(),
                          counts / counts.sum(), atol=1e-6)
    draws = s._draw(torch.zeros(200_000, dtype=torch.long), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=tiny_enc.n_items).double() / 200_000
    assert (freq - counts / counts.sum()).abs().max() < 0.01
    neg = s.sample(tiny_enc.parts["train"].user[:50], 3, torch.Generator().manual_seed(1))
    assert neg.shape == (50, 3)


def test_retrieval_sampler_draws_from_the_mixture_its_log_q_states(tiny_enc):
    """Hard negatives: a share of draws from the user's candidates, the rest by popularity;
    log_q is the log of exactly that mixture, per user (checked against the draw frequency)."""
    n_users, n_items = tiny_enc.n_users, tiny_enc.n_items
    g = torch.Generator().manual_seed(3)
    cands = torch.stack([torch.randperm(n_items, generator=g)[:4] for _ in range(n_users)])
    s = NegativeSampler(tiny_enc, candidates=cands, share=0.6)
    counts = torch.bincount(tiny_enc.parts["train"].item, minlength=n_items).double() + 1
    pop = counts / counts.sum()
    every = torch.arange(n_items)
    for u in (0, 5):
        want = 0.4 * pop + 0.6 / 4 * torch.isin(every, cands[u]).double()
        got = s.log_q(torch.full_like(every, u), every).double().exp()
        assert torch.allclose(got, want, atol=1e-6) and abs(float(want.sum()) - 1) < 1e-9
        draws = s._draw(torch.full((200_000,), u), torch.Generator().manual_seed(u))
        freq = torch.bincount(draws, minlength=n_items).double() / 200_000
        assert (freq - want).abs().max() < 0.01
    assert NegativeSampler(tiny_enc).log_q(every, every) is None
