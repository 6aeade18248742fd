"""Implicit ALS: each half step is the exact minimiser; scoring and a save/load round trip."""
import numpy as np
import scipy.sparse as sp
import torch

from pakd.models import build, load, save
from pakd.models.als import _half_step, ials


def _X(users=9, items=7, seed=0):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((users, items)) < 0.4).astype(np.float64))


def test_half_step_is_the_weighted_least_squares_solution():
    """Brute force: for each user, minimise sum_i c_ui (p_ui - x.y_i)^2 + reg |x|^2."""
    X = _X()
    Y = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    alpha, reg = 4.0, 0.5
    got = _half_step(X.indptr, X.indices, Y, alpha, reg, chunk_entries=5)   # several chunks
    P = torch.from_numpy(X.toarray())
    for u in range(9):
        C = torch.diag(1 + alpha * P[u])
        want = torch.linalg.solve(Y.T @ C @ Y + reg * torch.eye(3, dtype=torch.float64),
                                  Y.T @ C @ P[u])
        assert torch.allclose(got[u], want, atol=1e-9)


def test_als_ranks_the_observed_items_first_and_survives_save_load(tiny_enc, tmp_path):
    X = tiny_enc.seen(("train",)).astype(np.float64)
    X.data[:] = 1.0
    U, V = ials(X, factors=8, reg=0.1, alpha=10.0, iterations=8)
    m = build("als", tiny_enc.schema, {"factors": 8, "reg": 0.1, "alpha": 10.0})
    with torch.no_grad():
        m.user_factors.copy_(U)
        m.item_factors.copy_(V)
    s = m.score_all(torch.arange(tiny_enc.n_users))
    P = torch.from_numpy(X.toarray()).bool()
    # a good fit of the train matrix: observed cells score above unobserved ones on average
    assert s[P].mean() > s[~P].mean() + 0.3
    u, i = torch.tensor([0, 2]), torch.tensor([3, 5])
    assert torch.allclose(m(u, i).logit, s[u, i], atol=1e-6)
    save(m, tmp_path / "als")
    back, _ = load(tmp_path / "als")
    assert torch.equal(back.score_all(torch.arange(3)), m.score_all(torch.arange(3)))
