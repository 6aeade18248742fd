"""EASE: the closed form, both ways of computing it, scoring and a save/load round trip."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from model_zoo import fitted_ease

from pakd.errors import PakdError
from pakd.models import load, save
from pakd.models.ease import check_catalogue, ease_weights


def _X(users=7, items=5, seed=0):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((users, items)) < 0.5).astype(np.float64))


@pytest.mark.parametrize("shape", [(4, 9), (12, 5)])   # the users x users and items x items paths
def test_ease_equals_its_closed_form(shape):
    X = _X(*shape)
    lam = 3.0
    G = (X.T @ X).toarray() + lam * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    want = -P / np.diag(P)
    np.fill_diagonal(want, 0.0)
    got = ease_weights(X, lam).double().numpy()
    assert np.allclose(got, want, atol=1e-5)
    # the constrained least-squares optimum: off-diagonal gradient of the objective is zero
    Xd = X.toarray()
    grad = -2 * Xd.T @ (Xd - Xd @ got) + 2 * lam * got
    np.fill_diagonal(grad, 0.0)
    assert np.abs(grad).max() < 1e-4


def test_ease_scores_are_history_times_weights_and_survive_save_load(tiny_enc, tmp_path):
    m, X = fitted_ease(tiny_enc)
    users = torch.arange(tiny_enc.n_users)
    want = torch.from_numpy(X.toarray()).float() @ m.weight
    assert torch.allclose(m.score_all(users), want, atol=1e-5)
    u, i = torch.tensor([0, 3, 3]), torch.tensor([1, 2, 7])
    assert torch.allclose(m(u, i).logit, want[u, i], atol=1e-5)
    save(m, tmp_path / "ease")
    back, _ = load(tmp_path / "ease")
    assert torch.equal(back.score_all(users), m.score_all(users))
    assert back.n_params() == tiny_enc.n_items ** 2


def test_ease_refuses_a_catalogue_beyond_its_limit():
    with pytest.raises(PakdError, match="ease-max-items"):
        check_catalogue(40_000, 30_000)
