"""Teacher signals: the candidate-list heads skip seen items; features are standardised."""
import pytest
import torch
from model_zoo import randomised

from pakd.distill.signals import calibrate_temperature, teacher_signals


def test_signals_top_skips_train_items_and_features_are_standardised(tiny_enc):
    teacher = randomised("svd", tiny_enc).float()
    with torch.no_grad():
        scores = teacher.score_all(torch.arange(tiny_enc.n_users))
    s = teacher_signals(teacher, tiny_enc, scores, list_top=5, feature_dim=3)
    seen = tiny_enc.seen(("train",))
    for u in range(tiny_enc.n_users):
        rated = set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]].tolist())
        top = s.top[u].tolist()
        assert not rated & set(top)
        unseen = [i for i in range(tiny_enc.n_items) if i not in rated]
        best = sorted(unseen, key=lambda i: -float(scores[u, i]))[:5]
        assert set(top) == set(best)
    assert s.features.shape == (len(tiny_enc.parts["train"]), 3)
    assert torch.allclose(s.features.std(0), torch.ones(3), atol=1e-4)
    assert 0 < s.explained <= 1
    tr = tiny_enc.parts["train"]
    assert torch.allclose(s.ratings, teacher(tr.user, tr.item).rating.detach())

    assert torch.equal(s.seen[u], torch.isin(torch.arange(tiny_enc.n_items),
                                             torch.tensor(sorted(rated), dtype=torch.long)))


def _nll(scores, seen, enc, tau):
    va = enc.parts["valid"]
    s = scores.double().masked_fill(seen, float("-inf")) / tau
    lp = s - torch.logsumexp(s, 1, keepdim=True)
    v = lp[va.user, va.item]
    return float(-v[torch.isfinite(v)].mean())


def test_calibrated_temperature_minimises_the_valid_nll_and_scales_with_the_scores(tiny_enc):
    """Scores that know the valid items, with noise: a finite best temperature."""
    teacher = randomised("svd", tiny_enc).float()
    va = tiny_enc.parts["valid"]
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(tiny_enc.n_users, tiny_enc.n_items, generator=g)
    scores[va.user, va.item] += 3.0
    seen = teacher_signals(teacher, tiny_enc, scores, list_top=5, feature_dim=3).seen
    tau = calibrate_temperature(scores, seen, tiny_enc)
    best = _nll(scores, seen, tiny_enc, tau)
    assert best <= _nll(scores, seen, tiny_enc, tau * 1.2) + 1e-9
    assert best <= _nll(scores, seen, tiny_enc, tau / 1.2) + 1e-9
    assert 0.01 < tau < 100
    assert calibrate_temperature(3 * scores, seen, tiny_enc) == pytest.approx(3 * tau, rel=1e-4)
