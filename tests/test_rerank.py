"""Retrieve, then re-rank: the composed order on hand-made scores."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pakd.errors import PakdError
from pakd.rerank import candidates, compose, with_retrieval


def test_candidates_first_in_reranker_order_then_the_retrieval_order():
    retrieval = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0]])
    reranker = torch.tensor([[0.0, 1.0, 5.0, 3.0, 100.0, 200.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0]]))      # item 0 seen: not a candidate
    c = candidates(retrieval, seen, 3)
    assert c.tolist() == [[1, 2, 3]]
    s = compose(retrieval, reranker, c)
    order = torch.argsort(s[0], descending=True).tolist()
    # candidates 1,2,3 by the reranker (2, 3, 1), then the rest by retrieval (0, 4, 5) -
    # items 4 and 5 score highest with the reranker but were not retrieved
    assert order == [2, 3, 1, 0, 4, 5]


def test_tiny_reranker_gaps_survive_large_retrieval_scores():
    retrieval = torch.tensor([[1e6, 2e6, 3e6]])
    reranker = torch.tensor([[1e-7, 2e-7, 0.0]])
    c = candidates(retrieval, sp.csr_matrix((1, 3)), 2)
    s = compose(retrieval, reranker, c)
    assert torch.argsort(s[0], descending=True).tolist() == [1, 2, 0]


@pytest.mark.parametrize("n", [0, 7])
def test_bad_candidate_counts_are_refused(n):
    with pytest.raises(PakdError, match="rerank-n"):
        candidates(torch.zeros(1, 6), sp.csr_matrix((1, 6)), n)


def test_reranker_with_the_retrieval_score_blends_standardised_scores_per_user():
    """z(retrieval) + w z(reranker) over each user's candidates: a small weight keeps the
    retrieval order, a large one the re-ranker's; in between, the hand-computed blend."""
    retrieval = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 10.0, 20.0, 30.0, 40.0]])
    reranker = torch.tensor([[0.0, 1.0, 2.0, 9.0, 9.0], [5.0, 1.0, 3.0, 2.0, 0.0]])
    c = candidates(retrieval, sp.csr_matrix((2, 5)), 3)            # [0,1,2] and [4,3,2]
    assert c.tolist() == [[0, 1, 2], [4, 3, 2]]

    def order(w):
        s = compose(retrieval, with_retrieval(retrieval, reranker, c, w), c)
        return [torch.argsort(row, descending=True).tolist() for row in s]
    assert order(0.01) == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    assert order(100.0) == [[2, 1, 0, 3, 4], [2, 3, 4, 1, 0]]
    # user 0, w = 1: retrieval z = -(re-ranker z): all tie at 0
    b = with_retrieval(retrieval, reranker, c, 1.0)
    assert torch.allclose(b[0, :3], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # user 1, w = 0.5: retrieval (40, 30, 20) -> (1, 0, -1) / sqrt(2/3); re-ranker (0, 2, 3)
    r = torch.tensor([0.0, 2.0, 3.0], dtype=torch.float64)
    zr = (r - r.mean()) / r.std(unbiased=False)
    want = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) / (2 / 3) ** 0.5 + 0.5 * zr
    assert torch.allclose(with_retrieval(retrieval, reranker, c, 0.5)[1, [4, 3, 2]], want)
    one = candidates(retrieval, sp.csr_matrix((2, 5)), 1)            # N = 1: no spread
    assert torch.isfinite(with_retrieval(retrieval, reranker, one, 2.0)).all()
