"""The item-neighbourhood member against hand computations: the baseline's ridge optimum,
the shrunk Pearson similarity over common users, the top-k residual average, scoring and
a save/load round trip."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pakd.errors import PakdError
from pakd.models import build, load, save
from pakd.models.ease import check_catalogue
from pakd.models.knn import baseline_biases, item_similarity


def _ratings(users=9, items=6, seed=0, density=0.6):
    rng = np.random.default_rng(seed)
    mask = rng.random((users, items)) < density
    u, i = np.nonzero(mask)
    r = rng.integers(1, 11, len(u)) / 2.0
    return u, i, r


def test_baseline_biases_reach_the_ridge_optimum():
    u, i, r = _ratings()
    mu, bu, bi = baseline_biases(u, i, r, 9, 6, reg_user=2.0, reg_item=3.0, sweeps=300)
    e = r - mu - bu[u] - bi[i]
    # the gradient of sum e^2 + 2 |bu|^2 + 3 |bi|^2 in each bias is zero
    assert np.abs(-np.bincount(u, e, 9) + 2.0 * bu).max() < 1e-8
    assert np.abs(-np.bincount(i, e, 6) + 3.0 * bi).max() < 1e-8


def test_similarity_is_the_shrunk_pearson_of_common_users():
    u, i, r = _ratings(seed=1)
    R = sp.csr_matrix((r - 3.0, (u, i)), shape=(9, 6))
    got = item_similarity(R, shrink=4.0, block=4).double().numpy()   # two column blocks
    dense = R.toarray()
    rated = np.zeros((9, 6), bool)
    rated[u, i] = True
    for a in range(6):
        for b in range(6):
            both = rated[:, a] & rated[:, b]
            n = both.sum()
            x, y = dense[both, a], dense[both, b]
            den = np.sqrt((x * x).sum() * (y * y).sum())
            want = 0.0 if a == b or n < 2 or den == 0 else (
                (x * y).sum() / den * (n - 1) / (n - 1 + 4.0))
            assert got[a, b] == pytest.approx(want, abs=1e-6), (a, b)


def _fitted(tiny_enc, k=3, kind="knn", block=2048, **arch):   # bias L2s 15 (users), 10
    tr = tiny_enc.parts["train"]
    m = build(kind, tiny_enc.schema, {"history": len(tr.rating), "k": k, "shrink": 2.0, **arch})
    return m.fit(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy(), block).double(), tr


def test_prediction_is_baseline_plus_top_k_weighted_residuals(tiny_enc):
    m, tr = _fitted(tiny_enc)
    S = m.similarity.numpy()
    mu, bu, bi = baseline_biases(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy(),
                                 tiny_enc.n_users, tiny_enc.n_items, 15.0, 10.0)
    resid = {(int(a), int(b)): float(v - mu - bu[a] - bi[b])
             for a, b, v in zip(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy())}
    users = torch.arange(tiny_enc.n_users).repeat_interleave(tiny_enc.n_items)
    items = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    got = m(users, items).rating.numpy()
    support = m.support(users, items).numpy()
    for n, (a, b) in enumerate(zip(users.tolist(), items.tolist())):
        mine = [(S[b, j], resid[(a, j)]) for (uu, j) in resid if uu == a]
        top = sorted(mine, key=lambda t: -t[0])[:m.k]
        top = [(s, e) for s, e in top if s > 0]
        base = mu + bu[a] + bi[b]
        want = base + (sum(s * e for s, e in top) / sum(s for s, _ in top) if top else 0.0)
        assert got[n] == pytest.approx(want, abs=1e-5), (a, b)   # weights kept in float32
        assert support[n] == pytest.approx(sum(s for s, _ in top), abs=1e-6), (a, b)


def test_score_all_matches_pairs_and_survives_save_load(tiny_enc, tmp_path):
    m, _ = _fitted(tiny_enc, k=2)
    users = torch.arange(tiny_enc.n_users)
    grid = m.score_all(users)
    u = users.repeat_interleave(tiny_enc.n_items)
    i = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    assert torch.allclose(grid.reshape(-1), m(u, i).rating, atol=1e-12)
    some = torch.tensor([3, 0, 5])
    assert torch.allclose(m.score_all(users, some), grid[:, some], atol=1e-12)
    save(m.float(), tmp_path / "knn")
    back, cfg = load(tmp_path / "knn")
    assert cfg["arch"]["k"] == 2 and back.outputs == ("rating",)
    assert torch.equal(back.score_all(users), m.score_all(users))


def test_knn_refuses_a_catalogue_beyond_its_limit():
    with pytest.raises(PakdError, match="knn-max-items"):
        check_catalogue(40_000, 30_000, "knn")
    with pytest.raises(PakdError, match="uknn-max-users 30,000.*--min-user-ratings"):
        check_catalogue(40_000, 30_000, "uknn", side="users")


def test_user_neighbourhood_reads_the_raters_of_the_item(tiny_enc):
    """uknn: baseline plus the top-k positive user similarities among the item's raters,
    the similarity being the shrunk Pearson of user residuals over common items."""
    m, tr = _fitted(tiny_enc, kind="uknn")
    nu, ni = tiny_enc.n_users, tiny_enc.n_items
    mu, bu, bi = baseline_biases(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy(),
                                 nu, ni, 15.0, 10.0)
    resid = {(int(a), int(b)): float(v - mu - bu[a] - bi[b])
             for a, b, v in zip(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy())}
    R = sp.csr_matrix((list(resid.values()), tuple(zip(*resid))), shape=(nu, ni))
    S = item_similarity(R.T.tocsr(), shrink=2.0).double().numpy()     # users x users
    assert S.shape == (nu, nu) and np.allclose(m.similarity.numpy(), S, atol=1e-6)
    users = torch.arange(nu).repeat_interleave(ni)
    items = torch.arange(ni).repeat(nu)
    got = m(users, items).rating.numpy()
    for n, (a, b) in enumerate(zip(users.tolist(), items.tolist())):
        mine = [(S[a, v], resid[(v, j)]) for (v, j) in resid if j == b]
        top = [(s, e) for s, e in sorted(mine, key=lambda t: -t[0])[:m.k] if s > 0]
        want = mu + bu[a] + bi[b] + (sum(s * e for s, e in top) / sum(s for s, _ in top)
                                     if top else 0.0)
        assert got[n] == pytest.approx(want, abs=1e-5), (a, b)


def test_user_neighbourhood_scores_the_catalogue_as_its_pairs(tiny_enc, tmp_path):
    for k in (1, 2, 50):
        m, _ = _fitted(tiny_enc, k=k, kind="uknn")
        users = torch.arange(tiny_enc.n_users)
        grid = m.score_all(users)
        u = users.repeat_interleave(tiny_enc.n_items)
        i = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
        assert torch.allclose(grid.reshape(-1), m(u, i).rating, atol=1e-12), k
        some = torch.tensor([3, 0, 5])
        assert torch.allclose(m.score_all(users[:4], some), grid[:4, some], atol=1e-12)
    save(m.float(), tmp_path / "uknn")
    back, cfg = load(tmp_path / "uknn")
    assert cfg["arch"]["k"] == 50 and back.kind == "uknn"
    assert torch.equal(back.score_all(users), m.float().score_all(users))


@pytest.mark.parametrize("kind", ["knn", "uknn"])
def test_sparse_pair_search_equals_the_catalogue_layout_onnx_exports(tiny_enc, kind):
    """Pairs are predicted from their neighbours' stored entries; ONNX export traces the
    catalogue-wide layout instead: the two agree for every k."""
    tr = tiny_enc.parts["train"]
    users = torch.arange(tiny_enc.n_users).repeat_interleave(tiny_enc.n_items)
    items = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    for k in (1, 2, 3, 100):
        m = build(kind, tiny_enc.schema, {"history": len(tr.rating), "k": k, "shrink": 2.0})
        m = m.fit(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy()).double()
        sims, resid = m._pair_layout(users, items)
        dense = m._neighbour_term(sims, resid)
        weight = sims.topk(min(k, sims.shape[1]), -1).values.clamp(min=0).sum(-1)
        term, support = m._pair_sums(users, items)
        assert torch.allclose(term, dense, atol=1e-12) and (support > 0).any()
        assert torch.allclose(support, weight, atol=1e-12)


def test_interpolation_weights_solve_the_shrunk_co_residual_system(tiny_enc, tmp_path):
    """knn_interp: the k rated items most similar to i (either sign, ties in rating order),
    weighed by w solving A w = b, A and b the mean residual products over common users,
    shrunk towards the mean over all pairs (diagonal: the diagonal's mean) - computed here
    user by user from the residuals. score_all agrees with pairs; save/load keeps it."""
    beta = 3.0
    m, _ = _fitted(tiny_enc, k=2, kind="knn_interp", beta=beta, ridge=0.0)
    blocks, _ = _fitted(tiny_enc, k=2, kind="knn_interp", block=2, beta=beta, ridge=0.0)
    assert torch.allclose(blocks.covariance, m.covariance, atol=1e-6)   # columns in blocks
    n_u, n_i = tiny_enc.n_users, tiny_enc.n_items
    R, rated = np.zeros((n_u, n_i)), np.zeros((n_u, n_i), bool)
    order = {}
    ptr, hist, res = m.hist_indptr.numpy(), m.hist_items.numpy(), m.hist_residual.numpy()
    for u in range(n_u):
        for e in range(ptr[u], ptr[u + 1]):
            R[u, hist[e]], rated[u, hist[e]] = res[e], True
        order[u] = list(hist[ptr[u]:ptr[u + 1]])
    prod = np.einsum("ua,ub->ab", R, R)
    count = np.einsum("ua,ub->ab", rated.astype(float), rated.astype(float))
    off = ~np.eye(n_i, dtype=bool)
    off_mean = prod[off].sum() / count[off].sum()
    diag_mean = np.trace(prod) / np.trace(count)
    cov = np.where(off, (prod + beta * off_mean) / (count + beta),
                   (prod + beta * diag_mean) / (count + beta))
    S = m.similarity.numpy()
    users = torch.arange(n_u).repeat_interleave(n_i)
    items = torch.arange(n_i).repeat(n_u)
    got = m.predict_pairs(users, items).numpy()
    base = (m.rating_mean + m.user_bias[users] + m.item_bias[items]).numpy()
    for n, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
        near = sorted(order[u], key=lambda j: -S[i, j])[:2]      # stable: rating order
        want = base[n]
        if near:
            w = np.linalg.solve(cov[np.ix_(near, near)], cov[near, i])
            want += w @ R[u, near]
        assert got[n] == pytest.approx(want, abs=1e-5), (u, i)
    grid = m.score_all(torch.arange(n_u))
    assert torch.allclose(grid.reshape(-1), torch.from_numpy(got), atol=1e-12)
    save(m.float(), tmp_path / "knn_interp")
    back, cfg = load(tmp_path / "knn_interp")
    assert cfg["arch"]["beta"] == beta and back.kind == "knn_interp"
    assert torch.equal(back.predict_pairs(users, items), m.float().predict_pairs(users, items))


def test_interpolation_solves_as_lapack_and_its_export_layout_agrees(tiny_enc):
    """The unrolled elimination ONNX traces solves what LAPACK solves (a zero leading entry
    needs its row swap), and knn_interp's catalogue layout (a stable sort over the
    catalogue, ties to the lower item) predicts what its pair search does, for every k."""
    from pakd.models.knn import solve_unrolled
    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 6, 6, generator=g, dtype=torch.float64) + 3 * torch.eye(6)
    A[:, 0, 0] = 0.0
    b = torch.randn(64, 6, generator=g, dtype=torch.float64)
    want = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(solve_unrolled(A, b), want, atol=1e-10)
    assert not torch.isfinite(solve_unrolled(torch.zeros(1, 2, 2), torch.ones(1, 2))).any()
    users = torch.arange(tiny_enc.n_users).repeat_interleave(tiny_enc.n_items)
    items = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    for k in (1, 2, 3, 100):
        m, _ = _fitted(tiny_enc, k=k, kind="knn_interp", beta=3.0)
        assert torch.allclose(m.predict_pairs_laid_out(users, items),
                              m.predict_pairs(users, items), atol=1e-9), k
    with torch.no_grad():                  # a singular system: the baseline, never a NaN
        m.covariance.zero_()
    assert torch.equal(m.predict_pairs(users, items), m._base(users, items))
