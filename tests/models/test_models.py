"""Models: shapes, catalogue scoring, defaults from one table, save/load."""
import pytest
import torch
from model_zoo import KINDS, pairs, randomised

from pakd.config import ARCH
from pakd.models import build, load, save


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_score_all_agree(kind, tiny_enc):
    m = randomised(kind, tiny_enc)
    u, i = pairs(tiny_enc)
    out = m(u, i)
    assert out.rating.shape == out.logit.shape == (40,)
    assert out.hidden.shape[0] == 40
    s = m.score_all(torch.arange(tiny_enc.n_users))
    assert s.shape == (tiny_enc.n_users, tiny_enc.n_items)
    assert torch.allclose(s[u, i], out.logit.to(s.dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, arch", [
    # a middle layer sending all its maps on, another sending none to the output
    ("xdeepfm", {"embed_dim": 4, "cin_next": [3, 2, 0], "cin_out": [2, 0, 3], "dnn": [5]}),
    # a first layer sending no maps on: the later layers read nothing; no DNN
    ("xdeepfm", {"embed_dim": 4, "cin_next": [0, 2], "cin_out": [3, 2], "dnn": []}),
    ("xdeepfm", {"embed_dim": 3, "cin_next": [4, 0], "cin_out": [0, 5], "dnn": [6, 4]}),
    ("autoint", {"embed_dim": 4, "layers": 1, "heads": 2, "head_dim": 3, "dnn": []}),
])
@pytest.mark.parametrize("pair_batch", [7, 1024])
def test_scoring_path_equals_forward(kind, arch, pair_batch, tiny_enc):
    """score_all folds the head into the CIN and applies the DNN's first layer per side:
    every user x item logit equals the forward pass's, pruned shapes included, also when a
    pass of pairs straddles users."""
    m = randomised(kind, tiny_enc, arch=arch)
    m.PAIR_BATCH = pair_batch
    users = torch.arange(tiny_enc.n_users)
    u = users.repeat_interleave(tiny_enc.n_items)
    i = torch.arange(tiny_enc.n_items).repeat(tiny_enc.n_users)
    want = m(u, i).logit.view(tiny_enc.n_users, -1)
    assert want.std() > 0.1                  # the random weights give a spread to match
    got = m.score_all(users)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_weights_only(kind, tiny_enc, tmp_path):
    m = randomised(kind, tiny_enc).float()
    save(m, tmp_path / "model", meta={"note": "x"})
    assert (tmp_path / "model.safetensors").is_file()
    back, cfg = load(tmp_path / "model")
    assert cfg["kind"] == kind and cfg["note"] == "x"
    u, i = pairs(tiny_enc)
    assert torch.equal(back(u, i).rating, m(u, i).rating)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("kind", KINDS)
def test_build_fills_missing_arch_from_the_defaults_table(kind, tiny_enc):
    m = build(kind, tiny_enc.schema, tables=tiny_enc.tables)
    arch = m.arch()
    for key, value in ARCH[kind].items():
        if value == [] and kind == "tower_student":     # sizes the data gives (tower_tables)
            continue
        if key in arch:
            assert arch[key] == value or arch[key] == [value] * len(arch[key]), key


def test_models_have_no_defaults_of_their_own(tiny_enc):
    """Defaults live in pakd.config.defaults only: a model built without them fails."""
    from pakd.models import KINDS as MODEL_KINDS
    for kind, cls in MODEL_KINDS.items():
        with pytest.raises(TypeError):
            cls(tiny_enc.schema)


def test_param_groups_separate_embeddings_from_dense_layers(tiny_enc):
    m = randomised("xdeepfm", tiny_enc)
    extra = [torch.nn.Parameter(torch.zeros(3))]
    dense, sparse = m.param_groups(0.1, extra)
    assert dense["weight_decay"] == 0.1 and sparse["weight_decay"] == 0.0
    ids = {id(p) for p in dense["params"]} | {id(p) for p in sparse["params"]}
    assert ids == {id(p) for p in m.parameters()} | {id(extra[0])}
    assert all(isinstance(p, torch.nn.Parameter) and p.dim() == 2 for p in sparse["params"])
    assert id(m.head.weight) in {id(p) for p in dense["params"]}


def test_student_dedupes_lookups_without_changing_outputs(tiny_enc):
    """Each distinct user and item is looked up once per batch: the same outputs and (up to
    summation order) the same gradients as one lookup per pair; hooks turn it off."""
    m = randomised("lightweight_model", tiny_enc)
    u = torch.tensor([0, 0, 1, 0, 2, 1])
    i = torch.tensor([3, 3, 3, 4, 4, 3])
    embs = [e for e in m.modules() if hasattr(e, "dedupe")]
    assert embs and all(e.dedupe for e in embs)
    m.train()
    out = m(u, i)
    (out.rating.sum() + out.logit.sum()).backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    for e in embs:
        e.dedupe = False
    ref = m(u, i)
    (ref.rating.sum() + ref.logit.sum()).backward()
    assert torch.equal(out.rating, ref.rating) and torch.equal(out.logit, ref.logit)
    for n, p in m.named_parameters():
        assert torch.allclose(grads[n], p.grad, rtol=1e-10, atol=1e-12), n


def test_student_inference_reads_pooled_items_and_notices_changed_weights(tiny_enc):
    """Eval mode without autograd reads each item's pooled side fields from a catalogue
    table: the same outputs as pooling per pair; changing a weight in place (pruning) or a
    token table is seen at the next call."""
    m = randomised("lightweight_model", tiny_enc).eval()
    u, i = pairs(tiny_enc)

    def both():
        with torch.no_grad():
            fast = m(u, i)
        slow = m(u, i)                     # autograd on: pooled per pair
        for a, b in zip(fast, slow):
            assert torch.allclose(a, b.detach(), atol=1e-12)
        return fast
    first = both()
    assert m.__dict__["_item_memo"] is not None
    with torch.no_grad():
        m.embedding.emb["genres"].weight[1:] *= -2.0
    second = both()
    assert not torch.allclose(first.rating, second.rating)
    tab = m.tokens.get("genres")
    tab[:, 0] = 0                          # in place: the buffer's version moves
    third = both()
    assert not torch.allclose(second.rating, third.rating)


def _saved(tiny_enc, tmp_path):
    stem = tmp_path / "m"
    save(randomised("svd", tiny_enc).float(), stem)
    return stem


@pytest.mark.parametrize("damage,words", [
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: bytes(range(256)) * 4, "safetensors"),
    (lambda b: __import__("pickle").dumps({"weight": [1, 2, 3]}), "safetensors"),
])
def test_damaged_weight_files_give_a_clear_error(tiny_enc, tmp_path, damage, words):
    from pakd.errors import PakdError
    stem = _saved(tiny_enc, tmp_path)
    w = stem.with_suffix(".safetensors")
    w.write_bytes(damage(w.read_bytes()))
    with pytest.raises(PakdError, match=words):
        load(stem)


def test_non_finite_weights_and_bad_configs_are_refused(tiny_enc, tmp_path):
    import json

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from pakd.errors import PakdError
    stem = _saved(tiny_enc, tmp_path)
    w = stem.with_suffix(".safetensors")
    sd = st_load(w.read_bytes())
    sd["item_bias.weight"][3] = float("nan")
    w.write_bytes(st_save(sd))
    with pytest.raises(PakdError, match="non-finite.*item_bias.weight"):
        load(stem)
    cfg = stem.with_suffix(".json")
    good = json.loads(cfg.read_text())
    for broken in ({k: v for k, v in good.items() if k != "arch"}, {**good, "arch": {"nope": 1}},
                   {**good, "kind": "mystery"}):
        cfg.write_text(json.dumps(broken))
        with pytest.raises(PakdError):
            load(stem)
    cfg.write_text("{not json")
    with pytest.raises(PakdError, match="configuration"):
        load(stem)


def test_token_tables_out_of_range_are_refused(tiny_enc, tmp_path):
    """Found by fuzzing (issue 15): one flipped byte in a token table loaded fine and then
    raised a raw IndexError when the model scored."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from pakd.errors import PakdError
    stem = tmp_path / "m"
    save(randomised("lightweight_model", tiny_enc).float(), stem)
    w = stem.with_suffix(".safetensors")
    sd = st_load(w.read_bytes())
    key = next(k for k in sd if k.rsplit(".", 1)[-1].startswith("tab_"))
    sd[key].view(-1)[0] = 10_000
    w.write_bytes(st_save(sd))
    with pytest.raises(PakdError, match="index tables out of their range"):
        load(stem)


def test_item_row_table_gives_rows_to_the_most_rated_items():
    from pakd.models.student import item_row_table
    tab = item_row_table(torch.tensor([3, 9, 0, 9, 1]), 3)
    # counts 9 (items 1, 3: the lower index first), then 3 (item 0); items 2 and 4 own none
    assert tab.flatten().tolist() == [3, 1, 0, 2, 0]


def test_student_with_item_rows_describes_other_items_by_their_side_fields(tiny_enc, tmp_path):
    from pakd.models.student import ITEM_ROWS, item_row_table
    n = tiny_enc.n_items
    counts = torch.bincount(tiny_enc.parts["train"].item, minlength=n)
    rows = n // 2
    arch = {**KINDS["lightweight_model"], "item_rows": rows}
    tables = {**tiny_enc.tables, ITEM_ROWS: item_row_table(counts, rows)}
    torch.manual_seed(0)
    m = build("lightweight_model", tiny_enc.schema, arch, tables=tables).double().eval()
    full = build("lightweight_model", tiny_enc.schema, KINDS["lightweight_model"],
                 tables=tiny_enc.tables)
    width = arch["factors"] + arch["rank_factors"]
    assert full.n_params() - m.n_params() == (n - rows) * width
    assert m.embedding.emb["item_id"].weight.shape[0] == rows + 1
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    owner = tables[ITEM_ROWS][:, 0] > 0
    # an item without a row: changing every ID row leaves its ranking vector alone
    items = torch.arange(n)
    before = m._item_rank_side(items)[0]
    with torch.no_grad():
        m.rank_embedding.emb["item_id"].weight[1:] += 1.0
    after = m._item_rank_side(items)[0]
    assert torch.equal(before[~owner], after[~owner])
    assert not torch.allclose(before[owner], after[owner])
    u, i = pairs(tiny_enc)
    s = m.score_all(torch.arange(tiny_enc.n_users))
    assert torch.allclose(s[u, i], m(u, i).logit, atol=1e-9)
    save(m.float(), tmp_path / "rows")
    back, cfg = load(tmp_path / "rows")
    assert cfg["arch"]["item_rows"] == rows
    assert torch.equal(back(u, i).logit, m.float()(u, i).logit)
