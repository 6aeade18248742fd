"""The ensemble teacher: per-output mixes, calibration, and its saved form."""
import pytest
import torch
from model_zoo import fitted_ease, pairs, randomised

from pakd.models.ensemble import Ensemble


def test_ensemble_combines_per_task(tiny_enc):
    members = {k: randomised(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "xdeepfm", "autoint"])}
    ens = Ensemble(members, {"svd": 0.4, "xdeepfm": 0.4, "autoint": 0.2},
                   {"svd": "ranking", "xdeepfm": "rating", "autoint": "balance"}).double()
    assert ens.rating_mix == pytest.approx({"xdeepfm": 2 / 3, "autoint": 1 / 3})
    assert ens.ranking_mix == pytest.approx({"svd": 2 / 3, "autoint": 1 / 3})
    ens.calibrate(tiny_enc.n_users, sample=10)
    u, i = pairs(tiny_enc)
    out = ens(u, i)
    want_r = 2 / 3 * members["xdeepfm"](u, i).rating + 1 / 3 * members["autoint"](u, i).rating
    assert torch.allclose(out.rating, want_r)
    z = lambda n, k: (members[n](u, i).logit - ens.logit_mean[k]) / ens.logit_std[k]  # noqa: E731
    assert torch.allclose(out.logit, 2 / 3 * z("svd", 0) + 1 / 3 * z("autoint", 2))
    s = ens.score_all(torch.arange(tiny_enc.n_users))
    assert torch.allclose(s[u, i], out.logit.to(s.dtype), rtol=1e-5, atol=1e-6)
    assert ens.n_params() == sum(m.n_params() for m in members.values())


def test_ensemble_from_arch_roundtrip_and_old_key_names(tiny_enc):
    members = {k: randomised(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "autoint"])}
    ens = Ensemble(members, {"svd": 0.7, "autoint": 0.3}, {"svd": "ranking", "autoint": "balance"})
    ens.calibrate(tiny_enc.n_users, sample=10)
    arch = ens.arch()
    back = Ensemble.from_arch(arch, members)
    u, i = pairs(tiny_enc)
    assert torch.equal(back(u, i).logit, ens(u, i).logit)
    old = dict(arch, rating_weights=arch.pop("rating_mix"), ranking_weights=arch.pop("ranking_mix"))
    assert Ensemble.from_arch(old, members).ranking_mix == ens.ranking_mix


def test_ensemble_needs_a_member_per_output(tiny_enc):
    from pakd.errors import PakdError
    members = {"svd": randomised("svd", tiny_enc)}
    with pytest.raises(PakdError, match="rating"):
        Ensemble(members, {"svd": 1.0}, {"svd": "ranking"})


def test_rated_equals_the_forward_pass_and_skips_ranking_only_members(tiny_enc, monkeypatch):
    """Distillation reads (rating, hidden) of every train rating through `rated`: equal to
    the forward pass's, without computing a ranking-only member's pair logits (EASE's cost
    per pair)."""
    from pakd.models.ease import EASE
    ease = fitted_ease(tiny_enc)[0]
    members = {"svd": randomised("svd", tiny_enc).float(),
               "xdeepfm": randomised("xdeepfm", tiny_enc, seed=1).float(), "ease": ease}
    ens = Ensemble(members, {"svd": 0.5, "xdeepfm": 0.3, "ease": 0.2},
                   {"svd": "balance", "xdeepfm": "balance", "ease": "ranking"})
    ens.calibrate(tiny_enc.n_users, sample=10)
    u, i = pairs(tiny_enc)
    out = ens(u, i)
    monkeypatch.setattr(EASE, "pair_logits", lambda *a: pytest.fail("EASE scored pairs"))
    rating, hidden = ens.rated(u, i)
    assert torch.equal(rating, out.rating) and torch.equal(hidden, out.hidden)
    assert hidden.shape[1] == members["xdeepfm"].hidden_dim + members["svd"](u, i).hidden.shape[1]


def test_members_weighted_zero_are_not_run_for_that_output(tiny_enc, monkeypatch):
    """NNLS often gives a member weight 0 for an output: predict and score_all then equal
    the weighted sum without running it (its forward would add exactly nothing)."""
    members = {k: randomised(k, tiny_enc, seed=s)
               for s, k in enumerate(["svd", "xdeepfm", "autoint"])}
    ens = Ensemble(members, {"svd": 1, "xdeepfm": 1, "autoint": 1},
                   {"svd": "balance", "xdeepfm": "balance", "autoint": "balance"},
                   rating_mix={"svd": 0.0, "xdeepfm": 0.7, "autoint": 0.3},
                   ranking_mix={"svd": 0.6, "xdeepfm": 0.0, "autoint": 0.4}).double()
    ens.calibrate(tiny_enc.n_users, sample=10)
    u, i = pairs(tiny_enc)
    out = ens(u, i)                                   # every member, as before
    users = torch.arange(tiny_enc.n_users)
    want_s = (0.6 * (members["svd"].score_all(users) - ens.logit_mean[0]) / ens.logit_std[0]
              + 0.4 * (members["autoint"].score_all(users) - ens.logit_mean[2]) / ens.logit_std[2])
    monkeypatch.setattr(type(members["svd"]), "predict", lambda *a: pytest.fail("svd rated"))
    monkeypatch.setattr(type(members["xdeepfm"]), "score_all",
                        lambda *a: pytest.fail("xdeepfm scored"))
    assert torch.equal(ens.predict(u, i), out.rating)
    got = ens.score_all(users).double()
    assert torch.allclose(got, want_s.double(), atol=1e-6)
    assert torch.allclose(got[u, i], out.logit.double(), atol=1e-5)


def test_size_counts_only_members_some_output_runs(tiny_enc):
    """A member weighted 0 in one mix still computes the other output and counts; one
    weighted 0 in both is not needed to predict and does not count (EASE on ML-1M's shape,
    ranking weight 0: its 13.7M parameters were counted in the teacher's size)."""
    members = {k: randomised(k, tiny_enc, seed=s)
               for s, k in enumerate(["svd", "xdeepfm", "autoint"])}
    size = {k: m.n_params() for k, m in members.items()}
    tasks = {k: "balance" for k in members}
    one_zero = Ensemble(members, {k: 1 for k in members}, tasks,
                        rating_mix={"svd": 0.0, "xdeepfm": 0.7, "autoint": 0.3},
                        ranking_mix={"svd": 0.6, "xdeepfm": 0.0, "autoint": 0.4})
    assert one_zero.n_params() == sum(size.values())
    both_zero = Ensemble(members, {k: 1 for k in members}, tasks,
                         rating_mix={"svd": 0.0, "xdeepfm": 0.7, "autoint": 0.3},
                         ranking_mix={"svd": 0.0, "xdeepfm": 0.5, "autoint": 0.5})
    assert both_zero.n_params() == size["xdeepfm"] + size["autoint"]


def test_per_user_standardisation_equals_a_hand_computation(tiny_enc):
    """Each member's logits are z-scored with the mean and std of that user's scores over
    the items they did not rate in train; pairs, catalogue rows, cached and streamed
    statistics agree, and the saved form round-trips."""
    from pakd.errors import PakdError
    members = {k: randomised(k, tiny_enc, seed=s).double()
               for s, k in enumerate(["svd", "autoint"])}
    ens = Ensemble(members, {"svd": 0.7, "autoint": 0.3},
                   {"svd": "balance", "autoint": "balance"}, standardise="user").double()
    seen = tiny_enc.seen(("train",))
    ens.calibrate_users(seen, chunk=3)               # streamed, three users at a time
    users = torch.arange(tiny_enc.n_users)
    rows = {n: m.score_all(users) for n, m in members.items()}
    dense = torch.from_numpy(seen.toarray())
    for k, n in enumerate(members):
        for u in range(tiny_enc.n_users):
            free = rows[n][u][~dense[u]]
            assert float(ens.user_mean[u, k]) == pytest.approx(float(free.mean()), rel=1e-5)
            assert float(ens.user_std[u, k]) == pytest.approx(float(free.std(unbiased=False)),
                                                              rel=1e-5)
    cached = Ensemble(members, {"svd": 0.7, "autoint": 0.3},
                      {"svd": "balance", "autoint": "balance"}, standardise="user").double()
    cached.calibrate_users(seen, rows)
    assert torch.allclose(cached.user_std, ens.user_std) and torch.allclose(
        cached.user_mean, ens.user_mean)
    u, i = pairs(tiny_enc)
    z = {n: (members[n](u, i).logit - ens.user_mean[u, k]) / ens.user_std[u, k]
         for k, n in enumerate(members)}
    out = ens(u, i)
    assert torch.allclose(out.logit, 0.7 * z["svd"] + 0.3 * z["autoint"])
    s = ens.score_all(users)
    assert torch.allclose(s[u, i], out.logit.to(s.dtype), rtol=1e-5, atol=1e-6)
    back = Ensemble.from_arch(ens.arch(), members, ens.user_stats())
    assert torch.allclose(back.double()(u, i).logit, out.logit, rtol=1e-6, atol=1e-6)
    with pytest.raises(PakdError, match="pakd ensemble"):
        Ensemble.from_arch(ens.arch(), members)
    old = {k: v for k, v in ens.arch().items() if k != "standardise"}    # before the option
    assert Ensemble.from_arch(old, members).standardise == "catalogue"
    with pytest.raises(PakdError, match="standardise"):
        Ensemble(members, {"svd": 1.0, "autoint": 1.0}, {"svd": "balance", "autoint": "balance"},
                 standardise="global")


def test_rating_mix_fits_non_negative_weights_and_a_free_offset(tiny_enc):
    """Ratings made from known weights and a negative constant: the fit recovers them; a
    member the ratings weigh negatively gets 0; without the offset none is kept."""
    members = {k: randomised(k, tiny_enc, seed=s) for s, k in enumerate(["svd", "autoint"])}
    ens = Ensemble(members, {"svd": 1.0, "autoint": 1.0}, {"svd": "balance", "autoint": "balance"})
    g = torch.Generator().manual_seed(0)
    p = {"svd": torch.rand(200, generator=g) * 4 + 1, "autoint": torch.rand(200, generator=g) * 4}
    y = 0.3 * p["svd"] + 0.6 * p["autoint"] - 0.25
    ens.fit_rating_mix(p, y, offset=True)
    assert ens.rating_mix == pytest.approx({"svd": 0.3, "autoint": 0.6}, abs=1e-6)
    assert ens.rating_offset == pytest.approx(-0.25, abs=1e-6)
    assert torch.allclose(ens.combine_ratings(p), y, atol=1e-5)
    back = Ensemble.from_arch(ens.arch(), members)           # the offset is saved
    assert back.rating_offset == ens.rating_offset
    ens.fit_rating_mix({"svd": p["svd"], "autoint": -p["autoint"]}, y + 0.25, offset=True)
    assert ens.rating_mix["autoint"] == 0.0
    ens.fit_rating_mix(p, y, offset=False)
    assert ens.rating_offset == 0.0 and ens.rating_mix["svd"] > 0
    old = {k: v for k, v in ens.arch().items() if k != "rating_offset"}   # saved before it
    assert Ensemble.from_arch(old, members).rating_offset == 0.0
