"""The ranking-weight search of `--weights auto`."""
import pytest

from pakd.train.select import best_on_simplex as search_simplex


@pytest.mark.parametrize("target", [(0.6, 0.3, 0.1), (0.15, 0.35, 0.1, 0.4), (0.0, 1.0)])
def test_simplex_search_finds_the_best_convex_weights(target):
    """A peaked score: the grid plus the 0.05 moves reach the peak exactly."""
    names = [f"m{i}" for i in range(len(target))]
    calls = []

    def score(w):
        calls.append(w)
        return -sum((a - b) ** 2 for a, b in zip(w, target))

    w, best = search_simplex(names, score)
    assert w == pytest.approx(target, abs=1e-9) and best == pytest.approx(0.0, abs=1e-12)
    assert sum(w) == pytest.approx(1.0)
    assert len(calls) == len(set(calls))        # every point scored once


def _ensemble(enc):
    from model_zoo import randomised
    from pakd.models.ensemble import Ensemble
    members = {k: randomised(k, enc, seed=s).float() for s, k in enumerate(("svd", "autoint"))}
    return Ensemble(members, {"svd": 0.5, "autoint": 0.5}, {"svd": "balance",
                                                             "autoint": "balance"})


def test_auto_weights_without_cached_scores_fit_on_valid_users_within_the_budget(tiny_enc):
    """Uncached members are scored for the valid users only: with room for all of them the
    weights equal those fitted on cached matrices; a tight budget fits them on a sample."""
    from pakd.config import build_config
    from pakd.evaluate import score_matrix
    from pakd.memory import BLOCK_SHARE
    from pakd.scores import fit_auto_weights, weight_users
    cfg = build_config(overrides={"quiet": True})
    cached = _ensemble(tiny_enc)
    fit_auto_weights(cached, tiny_enc, cfg, {n: score_matrix(m, tiny_enc.n_users)
                                             for n, m in cached.members.items()})
    streamed = _ensemble(tiny_enc)
    fit_auto_weights(streamed, tiny_enc, cfg, {"svd": None, "autoint": None})
    assert streamed.ranking_mix == cached.ranking_mix
    assert streamed.rating_mix == pytest.approx(cached.rating_mix)
    valid = len(set(tiny_enc.parts["valid"].user.tolist()))
    gb = 5 * 4 * tiny_enc.n_items * 4 / BLOCK_SHARE / 2**30     # room for 5 users' rows
    tight = build_config(overrides={"quiet": True, "eval.max_memory_gb": gb})
    users = weight_users(tiny_enc, tight, ["svd", "autoint"])
    assert len(users) == 5 < valid
    assert users.equal(weight_users(tiny_enc, tight, ["svd", "autoint"]))   # seeded
    small = _ensemble(tiny_enc)
    fit_auto_weights(small, tiny_enc, tight, {"svd": None, "autoint": None})
    assert sum(small.ranking_mix.values()) == pytest.approx(1.0)


def test_likelihood_weights_recover_the_mix_that_drew_the_held_out_items(tiny_enc):
    """Held-out items drawn from softmax(1.5 z1 + 0.5 z2) over each user's unseen items:
    the fitted ranking weights are close to 0.75 / 0.25, and the returned log-likelihood
    is the mean log-softmax at those weights (scale refitted)."""
    import torch
    ens = _ensemble(tiny_enc)                 # catalogue standardisation at 0 / 1: z = logits
    g = torch.Generator().manual_seed(0)
    users, items = 600, 40
    z = {"svd": torch.randn(users, items, generator=g),
         "autoint": torch.randn(users, items, generator=g)}
    seen = torch.rand(users, items, generator=g) < 0.2
    p = torch.softmax((1.5 * z["svd"] + 0.5 * z["autoint"]).masked_fill(seen, -torch.inf), 1)
    drawn = torch.multinomial(p, 30, replacement=True, generator=g)
    rows = torch.arange(users)[:, None].expand_as(drawn).reshape(-1)
    got = ens.fit_ranking_likelihood(z, torch.arange(users), seen, (rows, drawn.reshape(-1)))
    assert ens.ranking_mix["svd"] == pytest.approx(0.75, abs=0.03)
    assert sum(ens.ranking_mix.values()) == pytest.approx(1.0)
    best = -1e9
    for scale in torch.linspace(1.0, 3.0, 201):
        s = (scale * (ens.ranking_mix["svd"] * z["svd"] + ens.ranking_mix["autoint"]
                      * z["autoint"])).masked_fill(seen, -torch.inf)
        best = max(best, float(torch.log_softmax(s, 1)[rows, drawn.reshape(-1)].mean()))
    assert got == pytest.approx(best, abs=1e-4)
