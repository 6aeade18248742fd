"""Retrieve, then re-rank: the composed order on hand-made scores."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pakd.errors import PakdError
from pakd.rerank import candidates, compose


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
