"""Metrics against cases computed by hand."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pakd.errors import PakdError
from pakd.metrics import auc, binary_labels, logloss, mae, rmse, topk_metrics


def csr(rows, n_users, n_items):
    us, its = zip(*rows) if rows else ((), ())
    return sp.csr_matrix((np.ones(len(us), bool), (us, its)), shape=(n_users, n_items))


def test_rmse_mae_clip_to_scale():
    pred = [6.0, 0.0, 3.0]
    true = [5.0, 1.0, 4.0]
    # clipped to [1, 5]: errors 0, 0, 1
    assert rmse(pred, true, (1, 5)) == pytest.approx(math.sqrt(1 / 3))
    assert mae(pred, true, (1, 5)) == pytest.approx(1 / 3)
    # unclipped: errors 1, 1, 1
    assert rmse(pred, true) == pytest.approx(1.0)


def test_binary_protocol_drops_threes():
    keep, y = binary_labels([5, 3, 1, 4, 2.5, 3.5])
    assert keep.tolist() == [True, False, True, True, True, True]
    assert y.tolist() == [1, 0, 1, 0, 1]


def test_auc_hand_case_and_ties():
    # positives 0.9, 0.4; negatives 0.5, 0.1 -> pairs won: (0.9>0.5, 0.9>0.1, 0.4>0.1) = 3 of 4
    assert auc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts half


def test_auc_single_class_is_a_clear_error():
    with pytest.raises(PakdError, match="both classes"):
        auc([0.1, 0.2], [1, 1])


def test_logloss_hand_case():
    assert logloss([0.8, 0.25], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.75)) / 2)


def test_ndcg_with_fewer_relevant_than_k_and_users_without_test_items():
    n_items = 6
    scores = torch.tensor([
        [0.9, 0.8, 0.7, 0.1, 0.2, 0.3],   # user 0: ranking 0,1,2,5,4,3
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # user 1: no relevant item
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # user 2: item 0 excluded (seen)
    ])
    relevant = csr([(0, 2), (2, 1), (2, 5)], 3, n_items)
    exclude = csr([(2, 0)], 3, n_items)
    m = topk_metrics(lambda u: scores[u], relevant, exclude, ks=(3, 10))
    assert m["users_evaluated"] == 2 and m["users_without_relevant"] == 1
    # user 0: item 2 at rank 3 -> DCG 1/log2(4) = 0.5, IDCG 1
    # user 2: ranking 1,2,3,4,5 -> hits at ranks 1 and 5
    #   @3: DCG 1, IDCG 1 + 1/log2(3); @10: DCG 1 + 1/log2(6)
    u2_ndcg3 = 1 / (1 + 1 / math.log2(3))
    u2_ndcg10 = (1 + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
    assert m["ndcg@3"] == pytest.approx((0.5 + u2_ndcg3) / 2)
    assert m["ndcg@10"] == pytest.approx((0.5 + u2_ndcg10) / 2)
    assert m["recall@3"] == pytest.approx((1 + 0.5) / 2)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["hit@3"] == pytest.approx(1.0)
    assert m["mrr@3"] == pytest.approx((1 / 3 + 1) / 2)
    # K larger than the catalogue: precision divides by K all the same
    assert m["precision@10"] == pytest.approx((0.1 + 0.2) / 2)


def test_score_ties_break_by_item_index():
    scores = torch.zeros(1, 5)
    m = topk_metrics(lambda u: scores[u], csr([(0, 0)], 1, 5), None, ks=(1,))
    assert m["ndcg@1"] == 1.0
    m = topk_metrics(lambda u: scores[u], csr([(0, 4)], 1, 5), None, ks=(1, 5))
    assert m["hit@1"] == 0.0
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(6))


def test_ranking_is_chunk_invariant():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(37, 50, generator=g)
    rng = np.random.default_rng(0)
    rel = sp.csr_matrix(rng.random((37, 50)) < 0.1)
    exc = sp.csr_matrix((rng.random((37, 50)) < 0.2) & ~rel.toarray())
    a = topk_metrics(lambda u: scores[u], rel, exc, chunk=5)
    b = topk_metrics(lambda u: scores[u], rel, exc, chunk=100)
    assert a == pytest.approx(b)


def test_top_k_equals_the_first_k_of_a_stable_sort():
    from pakd.metrics import top_k
    g = torch.Generator().manual_seed(0)
    for n, k in ((50, 10), (7, 7), (30, 1), (9, 12)):
        s = torch.randint(0, 4, (40, n), generator=g).float()       # many ties
        s[0] = -torch.inf                                              # a row of excluded items
        s[1, :3] = -torch.inf
        want = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(top_k(s, k), want), (n, k)


def test_ndcg_rel4_scores_only_the_liked_items_by_hand():
    n_items = 6
    scores = torch.tensor([
        [0.9, 0.8, 0.7, 0.1, 0.2, 0.3],   # user 0: ranking 0,1,2,5,4,3
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # user 1: ranking 5,4,3,2,1,0
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # user 2: held out items all under 4 stars
    ])
    relevant = csr([(0, 0), (0, 2), (1, 1), (1, 5), (2, 3)], 3, n_items)   # every held-out
    high = csr([(0, 2), (1, 1), (1, 5)], 3, n_items)                       # rated >= 4
    m = topk_metrics(lambda u: scores[u], relevant, None, ks=(3, 10), relevant_high=high)
    # all held-out: user 0 hits at ranks 1, 3 -> (1 + 0.5) / (1 + 1/log2 3); user 1 ranks 1
    # and 5; user 2: item 3 at rank 4 -> 1/log2 5 at K = 10
    ideal2 = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(((1 + 0.5) / ideal2 + (1 + 1 / math.log2(6)) / ideal2
                                          + 1 / math.log2(5)) / 3)
    # >= 4 only: user 0 has item 2 at rank 3 -> 0.5; user 1 items 5 and 1 at ranks 1 and 5;
    # user 2 has none and is left out of this mean
    assert m["users_evaluated_rel4"] == 2 and m["users_evaluated"] == 3
    assert m["ndcg@10_rel4"] == pytest.approx((0.5 + (1 + 1 / math.log2(6)) / ideal2) / 2)
    assert m["ndcg@3_rel4"] == pytest.approx((0.5 + 1 / ideal2) / 2)
    # the same relevance for both: the same figure
    same = topk_metrics(lambda u: scores[u], high, None, ks=(10,), relevant_high=high)
    assert same["ndcg@10_rel4"] == pytest.approx(same["ndcg@10"])
    assert "ndcg@10_rel4" not in topk_metrics(lambda u: scores[u], relevant, None, ks=(10,))
