"""Fisher estimation against brute force, and the true Fisher against Monte-Carlo."""
import pytest
import torch
import torch.nn.functional as F

from pakd.fisher.estimate import batch_generator, OBJECTIVES, diagonal_fisher
from pakd.models import DATA_TABLES, build, build_on
from pakd.models.ensemble import Ensemble

ARCH = {
    "svd": {"factors": 3, "rank_factors": 2},
    "xdeepfm": {"embed_dim": 3, "cin_layers": [4, 2], "dnn": [5]},
    "autoint": {"embed_dim": 3, "layers": 2, "heads": 2, "head_dim": 2, "dnn": [4]},
    "lightweight_model": {"factors": 3, "rank_factors": 2, "hidden": [4]},
    # propagation: an example's gradient reaches every node near its user and item
    "lightgcn": {"dim": 3, "rate_dims": 2, "layers": 2},
    # the scored item is also in the user's history: one row read twice per example
    "sasrec": {"dim": 4, "blocks": 2, "heads": [2, 1], "head_dim": 2, "neurons": [3, 2],
               "max_len": 5, "dropout": 0.0, "rate_dims": 2},
}


def model_of(kind, enc, seed=0):
    torch.manual_seed(seed)
    if kind in DATA_TABLES:
        m = build_on(kind, enc, ARCH[kind], rating_mean=3.0).double()
    else:
        m = build(kind, enc.schema, ARCH[kind], tables=enc.tables, rating_mean=3.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


def examples(enc, n=12):
    tr = enc.parts["train"]
    u, i, r = tr.user[:n], tr.item[:n], tr.rating[:n].double()
    neg = (i + 7) % enc.n_items
    return (torch.cat([u, u]), torch.cat([i, neg]), torch.cat([r, torch.zeros(n)]),
            torch.cat([torch.ones(n), torch.zeros(n)]).double(),
            torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]))


def brute_force(model, objective, u, i, yr, ys, hr, sigma2):
    """Loop over single examples: backward each loss and square its gradient."""
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for n in range(len(u)):
        model.zero_grad()
        out = model(u[n:n + 1], i[n:n + 1])
        loss = torch.zeros((), dtype=torch.float64)
        if objective.rating_nll_weight and hr[n]:
            loss = loss + objective.rating_nll_weight * 0.5 * (out.rating[0] - yr[n]) ** 2 / sigma2
        if objective.ranking_bce_weight:
            loss = loss + objective.ranking_bce_weight * F.binary_cross_entropy_with_logits(
                out.logit[0], ys[n])
        if not loss.requires_grad:  # a negative under the rating objective: no loss
            continue
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                acc[name] += g ** 2
    return acc


def assert_close(fast, slow):
    for name, ref in slow.items():
        got = fast[name]
        scale = ref.abs().max()
        if scale == 0:
            assert got.abs().max() == 0, name
            continue
        rel = ((got - ref).abs().max() / scale).item()
        assert rel < 1e-6, (name, rel)


@pytest.mark.parametrize("kind", list(ARCH))
@pytest.mark.parametrize("objective", ["rating", "ranking"])
def test_empirical_fisher_equals_brute_force(kind, objective, tiny_enc):
    m = model_of(kind, tiny_enc)
    u, i, yr, ys, hr = examples(tiny_enc)
    obj = OBJECTIVES[objective]
    fast = diagonal_fisher(m, u, i, yr, ys, hr, [obj], ["empirical"], sigma2=0.7, batch=5)
    assert_close(fast[(objective, "empirical")], brute_force(m, obj, u, i, yr, ys, hr, 0.7))


def test_ensemble_objective_reaches_every_member(tiny_enc):
    members = {k: model_of(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "xdeepfm", "autoint"])}
    ens = Ensemble(members, {"svd": 0.4, "xdeepfm": 0.4, "autoint": 0.2},
                   {"svd": "ranking", "xdeepfm": "rating", "autoint": "balance"}).double()
    ens.calibrate(tiny_enc.n_users, sample=8)
    u, i, yr, ys, hr = examples(tiny_enc, n=8)
    obj = OBJECTIVES["ensemble"]
    fast = diagonal_fisher(ens, u, i, yr, ys, hr, [obj], ["empirical"], sigma2=0.9, batch=4)
    slow = brute_force(ens, obj, u, i, yr, ys, hr, 0.9)
    assert_close(fast[("ensemble", "empirical")], slow)
    for name in members:
        assert any(v.sum() > 0 for k, v in fast[("ensemble", "empirical")].items()
                   if k.startswith(f"members.{name}."))


def test_true_fisher_coefficients_match_their_closed_form():
    """E over labels drawn from the model of the squared loss derivatives: 1/sigma^2 for
    the Gaussian rating NLL, p(1-p) for the Bernoulli ranking BCE (many cheap draws)."""
    from pakd.fisher.estimate import sample_coefficients
    rating = torch.tensor([3.0, 4.5], dtype=torch.float64)
    logit = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    hr = torch.tensor([True, True])
    y0 = torch.zeros(2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    terms = sample_coefficients(OBJECTIVES["ensemble"], rating, logit, y0, y0, hr, 0.5, "true",
                                20000, gen)
    er = sum(w * cr ** 2 for cr, _, w in terms)
    es = sum(w * cs ** 2 for _, cs, w in terms)
    p = torch.sigmoid(logit)
    assert torch.allclose(er, torch.full((2,), 1 / 0.5, dtype=torch.float64), rtol=0.05)
    assert torch.allclose(es, p * (1 - p), rtol=0.05)
    closed = sample_coefficients(OBJECTIVES["ensemble"], rating, logit, y0, y0, hr, 0.5, "true",
                                 0, gen)
    assert torch.allclose(sum(w * cr ** 2 for cr, _, w in closed), er, rtol=0.05)
    assert torch.allclose(sum(w * cs ** 2 for _, cs, w in closed), es, rtol=0.05)


def test_true_fisher_is_the_mean_empirical_fisher_at_drawn_labels(tiny_enc):
    """Monte-Carlo true Fisher = average over draws of the brute-force empirical Fisher with
    the drawn labels (the same generator draws them in the same order)."""
    m = model_of("xdeepfm", tiny_enc)
    u, i, yr, ys, hr = examples(tiny_enc, n=5)
    obj, sigma2, draws = OBJECTIVES["ensemble"], 0.8, 3
    fast = diagonal_fisher(m, u, i, yr, ys, hr, [obj], ["true"], sigma2=sigma2,
                           mc_samples=draws, batch=64, seed=11)[("ensemble", "true")]
    gen = batch_generator(11, 0)                 # one batch: the first batch's generator
    with torch.no_grad():
        out = m(u, i)
    r, p = out.rating.double(), torch.sigmoid(out.logit.double())
    want = {n: torch.zeros_like(v) for n, v in fast.items()}
    for _ in range(draws):
        yr_s = r + sigma2 ** 0.5 * torch.randn(r.shape, generator=gen, dtype=r.dtype)
        ys_s = torch.bernoulli(p, generator=gen)
        slow = brute_force(m, obj, u, i, yr_s, ys_s, hr, sigma2)
        for n in want:
            want[n] += slow[n] / draws
    assert_close(fast, want)


def test_true_and_empirical_differ(tiny_enc):
    m = model_of("autoint", tiny_enc)
    u, i, yr, ys, hr = examples(tiny_enc)
    res = diagonal_fisher(m, u, i, yr, ys, hr, [OBJECTIVES["ranking"]], ["empirical", "true"],
                          sigma2=1.0, mc_samples=0)
    e = sum(v.sum() for v in res[("ranking", "empirical")].values())
    t = sum(v.sum() for v in res[("ranking", "true")].values())
    assert e > 0 and t > 0 and abs(e - t) / e > 1e-3


def test_fisher_is_plain_data_not_a_graph(tiny_enc):
    """Accumulating must not chain autograd graphs across batches (that leaked memory)."""
    m = model_of("xdeepfm", tiny_enc)
    u, i, yr, ys, hr = examples(tiny_enc)
    res = diagonal_fisher(m, u, i, yr, ys, hr, [OBJECTIVES["rating"]], ["empirical"],
                          sigma2=1.0, batch=4)
    for v in res[("rating", "empirical")].values():
        assert not v.requires_grad and v.grad_fn is None
