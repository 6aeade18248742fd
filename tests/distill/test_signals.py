"""Teacher signals: the candidate-list heads skip seen items; features are standardised."""
import torch
from model_zoo import randomised

from pakd.distill.signals import teacher_signals


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
