"""The PAKD loop, directly on tiny structured data (not only through the pipeline)."""
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from pakd.data import encode, make_split
from pakd.data.dataset import Dataset
from pakd.distill.loop import distill
from pakd.distill.objective import Distillation, Losses, validate
from pakd.distill.signals import TeacherSignals, teacher_distribution
from pakd.models import build
from pakd.prune import Magnitude, MaskFisher, Random


@pytest.fixture(scope="module")
def world():
    """60 users in two taste groups x 40 items: a user watches and likes the items of the
    group, and dislikes the few others watched. The 'teacher' ranks items by index (a
    preference the labels do not contain), so a student can only learn it from the teacher."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for u in range(60):
        grp = u % 2
        liked = [i for i in range(40) if i % 2 == grp]
        other = [i for i in range(40) if i % 2 != grp]
        watch = [liked[int(j)] for j in torch.randperm(20, generator=g)[:12]] + \
                [other[int(j)] for j in torch.randperm(20, generator=g)[:3]]
        for k, i in enumerate(watch):
            rows.append((u + 1, i + 1, 5.0 if i % 2 == grp else 1.0, k))
    ds = Dataset("two-groups", pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]),
                 (1.0, 5.0))
    enc = encode(ds, make_split(ds.ratings, seed=0))
    tr = enc.parts["train"]
    scores = torch.arange(enc.n_items, dtype=torch.float32).expand(enc.n_users, -1) / 4
    seen_csr = enc.seen(("train",))
    seen = torch.zeros(enc.n_users, enc.n_items, dtype=torch.bool)
    for u in range(enc.n_users):
        seen[u, seen_csr.indices[seen_csr.indptr[u]:seen_csr.indptr[u + 1]]] = True
    probs, neg_entropy = teacher_distribution(scores, seen, 1.0)
    signals = TeacherSignals(ratings=tr.rating.clone(), scores=scores, seen=seen,
                             probs=probs, neg_entropy=neg_entropy,
                             top=torch.topk(scores.masked_fill(seen, -torch.inf), 8, dim=1).indices,
                             features=torch.randn(len(tr), 4, generator=g), explained=1.0)
    return enc, signals


def student(enc, seed=0):
    torch.manual_seed(seed)
    return build("lightweight_model", enc.schema, {"factors": 8, "rank_factors": 8,
                                                   "hidden": [8]}, tables=enc.tables,
                 rating_mean=float(enc.parts["train"].rating.mean()))


def settings(epochs):
    """The training settings `distill` reads (a config section in a run)."""
    return SimpleNamespace(epochs=epochs, batch_size=64, lr=0.05, weight_decay=1e-5, l2=0.0,
                           negatives=4, patience=epochs)


def run(enc, signals, *, tasks=("ranking", "rating", "feature"), label=1.0, crit=None,
        ratio=0.0, epochs=12, seed=0, kd_list="catalogue", label_ranking="full", floor=0.0,
        kd_ranking="kl"):
    losses = Losses(frozenset(tasks), 0.4, 1.0, 0.2, label, 8, 32, label_ranking, kd_list,
                    kd_ranking, 8)
    st = student(enc, seed)
    target = round(st.n_params() * (1 - ratio)) if ratio else None
    return distill(st, enc, signals, losses=losses, settings=settings(epochs),
                   criterion=crit, target=target, prune_until=0.3, prune_steps=3,
                   teacher_valid={"rmse": 1.0, "ndcg@10": 0.5}, seed=seed, group_floor=floor)


def teacher_agreement(model, signals, enc):
    """Spearman-like agreement: correlation of the student's catalogue scores with the
    teacher's, averaged over users."""
    with torch.no_grad():
        s = model.score_all(torch.arange(enc.n_users))
    t = signals.scores
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    return float(((s * t).sum(1) / (s.norm(dim=1) * t.norm(dim=1))).mean())


@pytest.mark.parametrize("kd_list,label_ranking", [("catalogue", "full"),
                                                    ("candidates", "softmax"),
                                                    ("candidates", "full")])
def test_listwise_distillation_transfers_what_labels_do_not_hold(world, kd_list, label_ranking):
    enc, signals = world
    kw = dict(kd_list=kd_list, label_ranking=label_ranking)
    kd = run(enc, signals, tasks=("ranking",), label=0.0, **kw)
    labels = run(enc, signals, tasks=(), label=1.0, **kw)
    assert teacher_agreement(kd.model, signals, enc) > 0.8
    assert teacher_agreement(labels.model, signals, enc) < 0.5


def test_labels_teach_the_two_groups(world):
    enc, signals = world
    untrained = validate(student(enc), enc)
    res = run(enc, signals, tasks=(), label=1.0, epochs=15)
    best = validate(res.model, enc)
    assert best["valid_rmse"] < 0.5 * untrained["valid_rmse"]
    assert best["valid_ndcg@10"] > untrained["valid_ndcg@10"] + 0.1


@pytest.mark.parametrize("kd_list", ["catalogue", "candidates"])
@pytest.mark.parametrize("crit", ["fisher", "magnitude", "random"])
def test_pruning_reaches_the_ratio_and_shrinks_the_model(world, crit, kd_list):
    enc, signals = world
    c = {"fisher": MaskFisher([1.0, 3.0]), "magnitude": Magnitude(),
         "random": Random(torch.Generator().manual_seed(0))}[crit]
    res = run(enc, signals, crit=c, ratio=0.5, kd_list=kd_list,
              label_ranking="full" if kd_list == "catalogue" else "softmax")
    start = res.start_params
    assert res.model.n_params() <= round(0.5 * start)         # the budget, never over it
    assert res.model.n_params() >= 0.45 * start               # and filled
    sizes = [p["params_after"] for p in res.prune_log]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) >= 2
    assert res.history[-1]["params"] == res.model.n_params()
    assert not any(m._forward_hooks for m in res.model.modules())   # criterion detached


def test_group_floor_keeps_a_share_of_every_group_or_is_refused(world):
    """--group-floor: the pruned student keeps at least that share of each group's units
    (8 factors, 8 ranking factors, 8 neurons: 0.3 keeps 3 of each); a floor that leaves
    more than the ratio allows stops before training, naming both settings."""
    from pakd.errors import PakdError
    enc, signals = world
    res = run(enc, signals, crit=Magnitude(), ratio=0.5, floor=0.3, epochs=4)
    arch = res.model.arch()
    assert min(arch["factors"], arch["rank_factors"], arch["hidden"][0]) >= 3
    free = run(enc, signals, crit=Magnitude(), ratio=0.5, epochs=4).model.arch()
    assert min(free["factors"], free["rank_factors"], free["hidden"][0]) < 3    # it binds
    assert res.model.n_params() <= round(0.5 * res.start_params)
    with pytest.raises(PakdError, match="budget of .* below .* group floor 0.9"):
        run(enc, signals, crit=Magnitude(), ratio=0.5, floor=0.9, epochs=1)


def test_no_criterion_no_pruning_and_same_seed_same_student(world):
    enc, signals = world
    a = run(enc, signals, epochs=4)
    b = run(enc, signals, epochs=4)
    assert a.model.n_params() == a.start_params and not a.prune_log
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k


def test_best_epoch_is_kept_per_output(world):
    enc, signals = world
    res = run(enc, signals, epochs=8)
    best_rmse = min(h["valid_rmse"] for h in res.history)
    best_ndcg = max(h["valid_ndcg@10"] for h in res.history)
    v = validate(res.model, enc)
    assert v["valid_rmse"] == pytest.approx(best_rmse, rel=1e-5)
    assert v["valid_ndcg@10"] == pytest.approx(best_ndcg, rel=1e-5)


def test_mask_fisher_of_a_catalogue_pass_equals_brute_force(world):
    """Per user list, the criterion's mask gradient (user-side rows counted twice, item rows
    left out) equals the autograd derivative of that user's loss by a mask on the ranking
    factors - so the bilinear shortcut is exact."""
    from pakd.distill import losses as L
    from pakd.distill.objective import sample_step
    from pakd.train import NegativeSampler
    enc, signals = world
    st = student(enc).train()
    losses = Losses(frozenset({"ranking"}), 0.4, 1.0, 0.2, 0.0, 8, 32, "full", "catalogue")
    s = sample_step(enc, torch.arange(40), NegativeSampler(enc), signals, losses, 4,
                    torch.Generator().manual_seed(1))
    crit = MaskFisher([1.0, 1.0])
    crit.attach(st)
    obj = Distillation(st, enc, signals, losses, settings(1), gen=torch.Generator(),
                       teacher_valid={})
    obj.observer = crit
    obj.backward(st, s)
    crit.observe(st, obj, s)
    got = crit._sums["rank_factors"][1]
    crit.detach()
    st.zero_grad()
    want = torch.zeros(st.rank_factors, dtype=torch.float64)
    items = torch.arange(enc.n_items)
    for k, u in enumerate(s.users):
        m = torch.ones(st.rank_factors, requires_grad=True)
        pk, qk = st._rank_vectors(u.view(1), items)
        c = st.rank_bias.sides(u.view(1)[:0], items)[1][:, 0, 0]
        cat = (pk * m) @ (qk * m).T + c
        rows, cols = signals.seen_pairs(u.view(1))
        lu = L.catalogue_kl(cat, signals.probs[u.view(1)], signals.neg_entropy[u.view(1)],
                            rows, cols)
        (g,) = torch.autograd.grad(lu / len(s.users), m)
        want += g.double() ** 2
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-12)


def test_rating_kd_on_unobserved_pairs_teaches_what_labels_cannot(world):
    """The 'teacher' rates every unobserved pair 5: only the unobserved-pair KD can move the
    student's ratings of items its users never rated; the Fisher criterion observes those
    extra pairs (as parts of their rated pair's example) and still prunes."""
    import dataclasses

    from pakd.train import NegativeSampler
    enc, signals = world
    tr = enc.parts["train"]
    items = NegativeSampler(enc).sample(tr.user, 2, torch.Generator().manual_seed(3))
    taught = dataclasses.replace(signals, unobs_items=items,
                                 unobs_ratings=torch.full(items.shape, 5.0))
    probe_u = tr.user.repeat_interleave(2)
    probe_i = NegativeSampler(enc).sample(tr.user, 2, torch.Generator().manual_seed(9)).flatten()

    def mean_unobserved(res):
        with torch.no_grad():
            return float(res.model.predict(probe_u, probe_i).mean())
    with_kd = run(enc, taught, tasks=("rating",), crit=MaskFisher([1.0, 3.0]), ratio=0.3)
    without = run(enc, signals, tasks=("rating",))
    assert mean_unobserved(with_kd) > mean_unobserved(without) + 0.5
    assert with_kd.model.n_params() <= round(0.7 * with_kd.start_params)


def test_student_criterion_check_measures_each_removal_and_correlates(world):
    """Issue 11, item 5: the criterion PAKD prunes with, checked on a trained student. Each
    measured valid change is the valid label loss of the masked student minus the
    student's; the raw mask Fisher (1/2 F, an OBD-style estimate at a trained point) ranks
    the removals' cost on the objective it was estimated on."""
    import copy

    from pakd.distill.check import check_student_criterion, valid_label_loss
    from pakd.prune import mask_units
    enc, signals = world
    res = run(enc, signals, epochs=8)
    losses = Losses(frozenset({"ranking", "rating"}), 0.4, 1.0, 0.2, 1.0, 8, 32, "full",
                    "catalogue")
    out = check_student_criterion(res.model, enc, signals, losses=losses, settings=settings(8),
                                  balance=[1.0, 3.0], units=100, steps=2, seed=0)
    groups = res.model.structure()
    assert out["units_tested"] == sum(g.units for g in groups)          # fewer than asked: all
    assert set(out["by_kind"]) <= {g.kind for g in groups}
    model = res.model.eval()
    for p in out["points"][::6]:
        keep = torch.ones(next(g.units for g in groups if g.name == p["group"]), dtype=torch.bool)
        keep[p["unit"]] = False
        masked = mask_units(copy.deepcopy(model), p["group"], keep)
        before = valid_label_loss(model, enc, signals.seen)
        after = valid_label_loss(masked, enc, signals.seen)
        assert p["measured"]["valid"] == pytest.approx(after - before, abs=1e-6)
        # the test part: train and valid items are seen
        from pakd.csr import csr_mask
        seen = csr_mask(enc.seen(("train", "valid")), enc.n_items)
        got = valid_label_loss(masked, enc, seen, "test") - valid_label_loss(model, enc, seen,
                                                                             "test")
        assert p["measured"]["test"] == pytest.approx(got, abs=1e-6)
    pooled = out["pooled"]
    assert "test_spearman_fisher" in pooled
    assert pooled["units"] + out["units_without_path"] == out["units_tested"]
    assert pooled["train_spearman_fisher_raw"] > 0.3, pooled
    lo, hi = pooled["train_spearman_fisher_raw_ci95"]
    assert lo <= pooled["train_spearman_fisher_raw"] <= hi
