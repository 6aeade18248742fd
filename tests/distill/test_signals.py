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


def test_signals_by_user_chunks_equal_the_whole_matrix_ones(tiny_enc):
    """No users x items matrix held (``scores`` None): the teacher scores users in chunks,
    and the list heads, the temperature and the kept head of each user's distribution are
    those of the whole matrix; seen items come as sparse rows with the same pairs."""
    teacher = randomised("svd", tiny_enc).float()
    with torch.no_grad():
        scores = teacher.score_all(torch.arange(tiny_enc.n_users))
    whole = teacher_signals(teacher, tiny_enc, scores, list_top=5, feature_dim=3)
    part = teacher_signals(teacher, tiny_enc, None, list_top=5, feature_dim=3, head=4,
                           chunk=7)
    assert part.scores is None and part.probs.shape == (tiny_enc.n_users, 4)
    assert part.scale == pytest.approx(whole.scale, rel=1e-6)
    assert torch.equal(part.top, whole.top)
    items, unseen, tail = part.head
    assert torch.allclose(part.probs, whole.probs.gather(1, items.long()), atol=1e-6)
    users = torch.tensor([0, 3, 5])
    assert torch.equal(part.seen[users], whole.seen[users])
    for a, b in zip(part.seen_pairs(users), whole.seen_pairs(users)):
        assert torch.equal(a, b)
    # the tail's even share: the teacher's mass outside the head over the other unseen items
    n_tail = (~whole.seen).sum(1) - unseen.sum(1)
    left = 1 - part.probs.sum(1)
    assert torch.allclose(tail * n_tail, left.clamp(min=0), atol=1e-6)
    import pickle                       # the sweep's worker processes receive them pickled
    again = pickle.loads(pickle.dumps(part))
    assert torch.equal(again.seen[users], part.seen[users])
    target = part.catalogue_target(users)
    assert target["head"][0].dtype == torch.long and len(target["teacher_probs"]) == 3


def test_calibration_on_a_sample_of_users(tiny_enc):
    """``max_users``: the temperature fitted on a seeded sample of the valid users - their
    rows asked for once; other users' scores change nothing."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(tiny_enc.n_users, tiny_enc.n_items, generator=g)
    va = tiny_enc.parts["valid"]
    scores[va.user, va.item] += 2.0
    seen = torch.zeros_like(scores, dtype=torch.bool)
    everyone = calibrate_temperature(scores, seen, tiny_enc)
    assert calibrate_temperature(scores, seen, tiny_enc, max_users=10**6) == everyone
    asked = []

    def rows(u):
        asked.append(u)
        return scores[u]
    sampled = calibrate_temperature(rows, seen, tiny_enc, max_users=5, seed=3)
    assert len(asked) == 1 and len(asked[0]) == 5 and 0.01 < sampled < 100
    others = torch.ones(tiny_enc.n_users, dtype=torch.bool)
    others[asked[0]] = False
    noisy = scores.clone()
    noisy[others] = torch.randn(int(others.sum()), tiny_enc.n_items, generator=g) * 9
    assert calibrate_temperature(noisy, seen, tiny_enc, max_users=5, seed=3) == sampled
    assert sampled != everyone


def test_streamed_pca_features_equal_the_whole_matrix_pca(tiny_enc):
    """Features built in two passes over batches (sum and Gram, then projection) equal a PCA
    of the whole hidden matrix, up to each component's sign; batches of 7 rows cross the
    part's end unevenly."""
    teacher = randomised("xdeepfm", tiny_enc).float().eval()
    s = teacher_signals(teacher, tiny_enc, None, list_top=5, feature_dim=4, batch=7, head=8,
                        calibrate=False)
    tr = tiny_enc.parts["train"]
    with torch.no_grad():
        h = teacher(tr.user, tr.item).hidden.double()
    c = h - h.mean(0)
    evals, evecs = torch.linalg.eigh(c.T @ c / (len(c) - 1))
    order = torch.argsort(evals, descending=True)[:4]
    want = c @ evecs[:, order]
    want = want / want.std(0)
    for j in range(4):
        sign = torch.sign((want[:, j] * s.features[:, j].double()).sum())
        assert torch.allclose(s.features[:, j].double() * sign, want[:, j], atol=1e-3)
    assert s.explained == pytest.approx(float(evals[order].sum() / evals.sum()), rel=1e-6)
