"""Every setting of every stage, declared once and validated by pydantic.

A setting's name is its dotted path (``distill.pruning_ratios``): the same key in YAML and
in ``run.yaml``, and one command-line flag in every command that has it - the flag it
declares (``flag=``) or ``--<section>-<name>`` (``--svd-epochs``). No two settings share a
flag (`pakd.config.resolve.settings` checks it). The teachers' sections and the student's take their
defaults from `pakd.config.defaults`, where each per-model default is declared once.
"""
from __future__ import annotations

import math

from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model,
                      field_validator, model_validator)
from pydantic.fields import FieldInfo

from ..data.releases import BASE_URL
from ..memory import DEFAULT_BUDGET_GB
from .defaults import (ARCH, DEFAULT_MEMBERS, DISTILL_FIT, FIT, LIGHTWEIGHT, PRUNE_EPOCHS, STUDENT,
                       STUDENT_ARCH)

MEMBERS = Literal["svd", "xdeepfm", "autoint", "ease", "als", "lightgcn", "sasrec", "knn",
                  "uknn", "knn_interp"]
TEACHER_CHOICES = Literal["ensemble", "svd", "xdeepfm", "autoint", "ease", "als", "lightgcn",
                          "sasrec", "knn", "uknn", "knn_interp"]
MEMBER_NAMES = "svd, xdeepfm, autoint, ease, als, lightgcn, sasrec, knn, uknn, knn_interp"


def _f(default, desc: str, flag: str | None = None, aliases: list[str] | None = None, **kw):
    """A setting: default, ``--help`` text, and optionally its own flag and aliases (the
    original experiment's spellings)."""
    extra: dict[str, Any] = {}
    if flag:
        extra["flag"] = flag
    if aliases:
        extra["aliases"] = aliases
    return Field(default, description=desc, json_schema_extra=extra or None, **kw)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _with_defaults(name: str, fields_from: list[type[BaseModel]], defaults: dict,
                   only: list[str] | None = None, doc: str = "",
                   base: type[Section] = None) -> type[Section]:
    """A section holding the fields of ``fields_from`` (all, or ``only``), each declared
    there once, with defaults taken from the data table ``defaults``."""
    fields: dict[str, Any] = {}
    for src in fields_from:
        for key, info in src.model_fields.items():
            if only is not None and key not in only:
                continue
            new = FieldInfo.merge_field_infos(info, default=defaults[key]) \
                if key in defaults else info
            fields[key] = (info.annotation, new)
    missing = set(defaults) - set(fields)
    if missing:
        raise TypeError(f"{name}: defaults for unknown settings {sorted(missing)}")
    return create_model(name, __base__=base or Section, __doc__=doc, **fields)


# ----------------------------------------------------------------------------- data

class DataConfig(Section):
    dataset: str = _f("ml-latest-small", "MovieLens release (ml-100k, ml-1m, ml-10m, ml-20m, "
                      "ml-25m, ml-32m, ml-latest, ml-latest-small) or a path to a CSV/TSV/"
                      "Parquet ratings file", flag="--dataset")
    dir: str | None = _f(None, "folder with the release's files (unset: the embedded copy "
                         "for ml-latest-small, else the cache)", flag="--data-dir")
    cache: str | None = _f(None, "download cache (unset: $PAKD_CACHE or ~/.cache/pakd)",
                           flag="--cache-dir")
    download: bool = _f(True, "download a missing MovieLens release (MD5-checked)",
                        flag="--download")
    base_url: str = _f(BASE_URL, "where MovieLens zips are downloaded from",
                       flag="--base-url")
    allow_insecure: bool = _f(False, "download from a plain http:// --base-url (a mirror on "
                              "a network you trust); https only otherwise",
                              flag="--allow-insecure")
    allow_unverified: bool = _f(False, "download a release pakd has no checksum of record "
                                "for (ml-latest, ml-latest-small) without verifying it",
                                flag="--allow-unverified")
    columns: dict[str, str] = _f({}, "generic tables: column mapping, e.g. "
                                 "user=userId,item=movieId,rating=rating,timestamp=ts",
                                 flag="--columns")
    sep: str | None = _f(None, "generic tables: delimiter (unset: from the extension)",
                         flag="--sep")
    encoding: str = _f("utf-8", "generic tables: text encoding", flag="--encoding")
    rating_min: float | None = _f(None, "generic tables: lowest valid "
                                  "rating (unset: observed, if it looks like a scale)",
                                  flag="--rating-min")
    rating_max: float | None = _f(None, "generic tables: highest valid rating (unset: "
                                  "observed, if it looks like a scale)", flag="--rating-max")
    duplicates: Literal["error", "first", "last", "mean"] = _f(
        "error", "rule for a repeated (user, item) pair: error, or keep the first/last by "
        "time, or the mean", flag="--duplicates")
    user_features: str | None = _f(None, "generic tables: user feature file",
                                   flag="--user-features")
    item_features: str | None = _f(None, "generic tables: item feature file",
                                   flag="--item-features")
    user_key: str | None = _f(None, "ID column of the user feature file (unset: the user "
                              "column)", flag="--user-key")
    item_key: str | None = _f(None, "ID column of the item feature file (unset: the item "
                              "column)", flag="--item-key")
    feature_kinds: dict[str, Literal["categorical", "multi", "numeric"]] = _f(
        {}, "generic tables: kind per feature column, e.g. genres=multi,year=numeric",
        flag="--feature-kinds")
    multi_sep: str = _f("|", "separator inside multi-valued feature cells", flag="--multi-sep")
    title_column: str | None = _f(None, "item feature column holding a display title",
                                  flag="--title-column")
    tags_top_n: int = _f(50, "ml-latest/20m/25m/32m/10m: use the N most frequent tags as a "
                         "multi-valued item field (0 = off)", flag="--tags-top-n", ge=0)
    zip_prefix_len: int = _f(2, "ml-100k/1m: characters of the zip code kept as a field",
                             flag="--zip-prefix-len", ge=1)
    min_user_ratings: int = _f(1, "drop users with fewer ratings", flag="--min-user-ratings",
                               ge=1)
    min_item_ratings: int = _f(1, "drop items with fewer ratings", flag="--min-item-ratings",
                               ge=1)
    n_buckets: int = _f(10, "quantile buckets for numeric fields (e.g. release year)",
                        flag="--n-buckets", ge=1)
    max_tokens: int = _f(16, "most tokens kept per multi-valued cell", flag="--max-tokens", ge=1)


class SplitConfig(Section):
    method: Literal["user_ratio", "global_ratio", "temporal", "user_temporal", "user_last_k",
                    "leave_one_out"] = _f(
        "user_ratio", "user_ratio (per-user random), global_ratio, temporal (global time cut), "
        "user_temporal (each user's newest ratings to valid/test by the shares), "
        "user_last_k, leave_one_out", flag="--split")
    ratios: list[float] = _f([0.8, 0.1, 0.1], "train,valid,test shares for ratio/temporal "
                             "splits")
    k: int = _f(1, "ratings per user held out for valid and for test by user_last_k",
                flag="--last-k", ge=1)

    @field_validator("ratios")
    @classmethod
    def _three(cls, v):
        if len(v) != 3 or min(v) < 0 or abs(sum(v) - 1) > 1e-6 or v[0] <= 0:
            raise ValueError("need three non-negative shares summing to 1 with train > 0")
        return v


def _non_empty(what: str):
    """A validator for a list setting that means nothing empty (an empty list would be
    written into run.yaml, and the stage would then do nothing)."""
    def check(v: list) -> list:
        if not v:
            raise ValueError(f"give at least one {what}")
        return v
    return check


def _cutoffs(v: list[int]) -> list[int]:
    if not v or min(v) < 1 or len(set(v)) != len(v):
        raise ValueError("cut-offs are distinct positive integers, e.g. 10,20")
    return v


class EvalConfig(Section):
    ks: Annotated[list[int], AfterValidator(_cutoffs)] = _f(
        [10, 20], "cut-offs K for top-K metrics", flag="--ks")
    positive_above: float = _f(3.0, "binary protocol: rating > this is positive",
                               flag="--positive-above")
    negative_below: float = _f(3.0, "binary protocol: rating < this is negative",
                               flag="--negative-below")
    relevant_min_rating: float | None = _f(None, "top-K: held-out items count as relevant only "
                                           "from this rating up (unset: all)",
                                           flag="--relevant-min-rating")
    chunk: int = _f(512, "most users scored at once in full ranking (fewer when "
                    "--max-memory-gb asks)", ge=1)
    max_memory_gb: float = _f(DEFAULT_BUDGET_GB, "memory budget of full-catalogue work (evaluation, "
                              "ranking distillation, score caches): users are scored in "
                              "chunks whose users x items block fits in half of it, and a "
                              "member's score matrix is cached whole only if it fits",
                              flag="--max-memory-gb", gt=0)

    def kwargs(self) -> dict:
        """The plain arguments `pakd.evaluate` takes."""
        return self.model_dump()


# ----------------------------------------------------------------------------- teachers

class FitSettings(Section):
    """How one model is trained: each field declared here once; each teacher's section
    takes these fields with its own defaults from `pakd.config.defaults.FIT`."""
    epochs: int = Field(30, description="most epochs (early stopping usually ends sooner)", ge=1)
    batch_size: int = Field(1024, description="observed ratings per step", ge=1)
    lr: float = Field(1e-3, description="AdamW learning rate", gt=0)
    weight_decay: float = Field(1e-5, description="AdamW decoupled weight decay of dense "
                                "layers", ge=0)
    l2: float = Field(0.0, description="L2 on the embedding rows a step touches "
                      "(Surprise-style)", ge=0)
    negatives: int = Field(4, description="sampled unobserved items per observed rating", ge=1)
    ranking_loss: Literal["bce", "bpr", "softmax", "full"] = Field(
        "bce", description="bce (pointwise), bpr (pairwise), softmax (sampled softmax over "
        "the positive and its negatives) or full (softmax over the whole catalogue; "
        "dot-product rankers only)")
    negative_sampling: Literal["uniform", "popularity", "retrieval"] = Field(
        "uniform", description="how negatives are drawn: uniform; in proportion to train "
        "popularity; or retrieval: a share from the user's top-N of the retrieval stage "
        "(--retrieval, trained earlier in the run), the rest by popularity. With popularity "
        "or retrieval the sampled softmax subtracts each item's log probability of being "
        "drawn (the logQ correction)")
    retrieval_share: float = Field(0.5, description="negative_sampling retrieval: share of "
                                   "negatives drawn from the retrieval stage's top-N",
                                   ge=0, le=1)
    retrieval_n: int = Field(100, description="negative_sampling retrieval: the N of the "
                             "retrieval stage's top-N per user", ge=1)
    rating_loss_weight: float = Field(1.0, description="weight of the rating MSE in the "
                                      "training loss", ge=0)
    ranking_loss_weight: float = Field(1.0, description="weight of the ranking loss in the "
                                       "training loss", ge=0)
    patience: int = Field(3, description="epochs without validation improvement before "
                          "stopping", ge=1)
    micro_batch: int = Field(0, description="ratings per forward/backward chunk of a step (the "
                             "step's gradient is the same; small chunks run faster on CPU for "
                             "wide models); 0 = the whole batch at once", ge=0)
    monitor: Literal["loss", "rmse", "rank_loss", "per_task"] = Field(
        "loss", description="validation figure that picks the best epoch: the weighted loss "
        "of both tasks, the rating RMSE, the ranking loss, or per_task (each output keeps its "
        "own best epoch - valid RMSE and full-catalogue valid NDCG@10 - for models whose "
        "outputs share no parameters)")


class SVDArch(Section):
    factors: int = Field(description="rating factors", ge=1)
    rank_factors: int = Field(description="ranking factors (0 = share the rating factors)", ge=0)
    init_std: float = Field(description="std of the factor initialisation", gt=0)


class XDeepFMArch(Section):
    embed_dim: int = Field(description="field embedding width", ge=1)
    cin_layers: list[int] = Field(description="CIN feature maps per layer (split-half)")
    dnn: list[int] = Field(description="DNN hidden sizes")
    dropout: float = Field(description="DNN dropout", ge=0, lt=1)


class AutoIntArch(Section):
    embed_dim: int = Field(description="field embedding width", ge=1)
    layers: int = Field(description="interacting layers", ge=1)
    heads: int = Field(description="attention heads per layer", ge=1)
    head_dim: int = Field(description="units per head", ge=1)
    dnn: list[int] = Field(description="DNN branch hidden sizes (AutoInt+); empty = AutoInt")
    dropout: float = Field(description="DNN dropout", ge=0, lt=1)


class LightGCNArch(Section):
    dim: int = Field(description="width of the ranking table (the LightGCN dimension)", ge=1)
    rate_dims: int = Field(description="width of the rating table (propagated the same way)",
                           ge=1)
    layers: int = Field(description="propagation steps over the train graph (0 = plain MF)",
                        ge=0)
    init_std: float = Field(description="std of the tables' initialisation", gt=0)


class SASRecArch(Section):
    dim: int = Field(description="width of the item vectors and the transformer", ge=1)
    blocks: int = Field(description="transformer blocks", ge=1)
    heads: int = Field(description="attention heads per block", ge=1)
    head_dim: int = Field(description="units per head", ge=1)
    neurons: int = Field(description="feed-forward neurons per block", ge=1)
    max_len: int = Field(description="most recent train items a user is read from", ge=1)
    dropout: float = Field(description="dropout on the embeddings, attention and block "
                           "outputs", ge=0, lt=1)
    rate_dims: int = Field(description="factors of the rating head (a biased factorisation)",
                           ge=1)
    init_std: float = Field(description="std of the tables' initialisation", gt=0)


class LightweightArch(Section):
    factors: int = Field(description="rating factors", ge=1)
    rank_factors: int = Field(description="ranking factors", ge=1)
    hidden: list[int] = Field(description="MLP hidden sizes of the rating side")
    side_fields: bool = Field(description="read the side fields (genres, year, tags, "
                              "demographics) besides the IDs")


class StudentArch(Section):
    dim: int = Field(description="width of the item factor space", ge=1)
    rank_dims: int = Field(description="ranking dimensions (user and item maps)", ge=1)
    rate_dims: int = Field(description="rating dimensions (user and item maps)", ge=1)
    buckets: int = Field(description="popularity buckets of item ID rows (each bucket's table "
                         "width is pruned on its own)", ge=1)
    mlp: list[int] = Field(description="MLP hidden sizes on the rating side (empty: none)")
    user_side: Literal["tower", "table"] = Field(
        description="tower: a user is the items they rated (no per-user parameters); table: "
        "plus an ID row per user, prunable like the item rows")
    alpha: float = Field(description="a user's history is summed and divided by its length "
                         "to this power", ge=0, le=1)


def _positive_strengths(v: list[float]) -> list[float]:
    if not v or min(v) <= 0:
        raise ValueError("need at least one positive L2 strength")
    return v


Strengths = Annotated[list[float], AfterValidator(_positive_strengths)]   # L2 grids


def _positive_counts(v: list[int]) -> list[int]:
    if not v or min(v) < 1:
        raise ValueError("need at least one count, each 1 or more")
    return v


class EASEConfig(Section):
    """The EASE member (closed form; no training loop)."""
    lambdas: Strengths = _f([50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
                            "L2 strengths tried; the one with the best valid NDCG@10 is kept",
                            flag="--ease-lambdas")
    max_items: int = _f(30000, "largest catalogue EASE accepts (its weights are items^2 "
                        "floats: 30,000 items = 3.6 GB)", flag="--ease-max-items", ge=1)


class ALSConfig(Section):
    """The implicit-ALS member (alternating exact solves; no training loop)."""
    factors: int = _f(ARCH["als"]["factors"], "factors", flag="--als-factors", ge=1)
    alpha: float = _f(ARCH["als"]["alpha"], "confidence of an observed cell: 1 + alpha",
                      flag="--als-alpha", gt=0)
    regs: Strengths = _f([10.0, 100.0, 1000.0], "L2 strengths tried; the best valid NDCG@10 "
                         "is kept", flag="--als-regs")
    iterations: int = _f(10, "alternations (users, then items)", flag="--als-iterations", ge=1)


NEIGHBOUR_COUNTS = [10, 20, 40, 80, 160, 320]     # knn's and uknn's k grid


class KNNConfig(Section):
    """The item-neighbourhood member (closed form; no training loop): a rating member."""
    ks: Annotated[list[int], AfterValidator(_positive_counts)] = _f(
        NEIGHBOUR_COUNTS, "neighbour counts tried; the one with the best valid RMSE is kept",
        flag="--knn-ks")
    shrink: float = _f(ARCH["knn"]["shrink"], "shrinkage of a similarity seen on few users: "
                       "times (n - 1) / (n - 1 + shrink) for n common users",
                       flag="--knn-shrink", ge=0)
    reg_user: float = _f(ARCH["knn"]["reg_user"], "L2 of the baseline's user biases",
                         flag="--knn-reg-user", ge=0)
    reg_item: float = _f(ARCH["knn"]["reg_item"], "L2 of the baseline's item biases",
                         flag="--knn-reg-item", ge=0)
    max_items: int = _f(30000, "largest catalogue the member accepts (its similarities are "
                        "items^2 floats: 30,000 items = 3.6 GB)", flag="--knn-max-items", ge=1)


class UserKNNConfig(Section):
    """The user-neighbourhood member (closed form): a rating member, knn with users and
    items swapped."""
    ks: Annotated[list[int], AfterValidator(_positive_counts)] = _f(
        NEIGHBOUR_COUNTS, "neighbour counts tried; the one with the best valid RMSE is kept",
        flag="--uknn-ks")
    shrink: float = _f(ARCH["uknn"]["shrink"], "shrinkage of a similarity seen on few items: "
                       "times (n - 1) / (n - 1 + shrink) for n common items",
                       flag="--uknn-shrink", ge=0)
    reg_user: float = _f(ARCH["uknn"]["reg_user"], "L2 of the baseline's user biases",
                         flag="--uknn-reg-user", ge=0)
    reg_item: float = _f(ARCH["uknn"]["reg_item"], "L2 of the baseline's item biases",
                         flag="--uknn-reg-item", ge=0)
    max_users: int = _f(30000, "most users the member accepts (its similarities are users^2 "
                        "floats: 30,000 users = 3.6 GB)", flag="--uknn-max-users", ge=1)


class InterpolatedKNNConfig(Section):
    """The item neighbourhood with interpolation weights solved per prediction (closed
    form): a rating member beside knn."""
    ks: Annotated[list[int], AfterValidator(_positive_counts)] = _f(
        [5, 10, 20, 40], "neighbour counts tried; the one with the best valid RMSE is kept",
        flag="--knn-interp-ks")
    beta: float = _f(ARCH["knn_interp"]["beta"], "pseudo-users shrinking each pair's mean "
                     "residual product towards the mean over all pairs",
                     flag="--knn-interp-beta", ge=0)
    ridge: float = _f(ARCH["knn_interp"]["ridge"], "added to the diagonal of each "
                      "prediction's system", flag="--knn-interp-ridge", ge=0)
    shrink: float = _f(ARCH["knn_interp"]["shrink"], "shrinkage of the similarity that picks "
                       "the neighbours (as knn's)", flag="--knn-interp-shrink", ge=0)
    reg_user: float = _f(ARCH["knn_interp"]["reg_user"], "L2 of the baseline's user biases",
                         flag="--knn-interp-reg-user", ge=0)
    reg_item: float = _f(ARCH["knn_interp"]["reg_item"], "L2 of the baseline's item biases",
                         flag="--knn-interp-reg-item", ge=0)
    max_items: int = _f(20000, "largest catalogue the member accepts (two items^2 float "
                        "matrices: 20,000 items = 3.2 GB)", flag="--knn-interp-max-items", ge=1)



ARCH_SECTIONS = {"svd": SVDArch, "xdeepfm": XDeepFMArch, "autoint": AutoIntArch,
                 "lightgcn": LightGCNArch, "sasrec": SASRecArch}
SVDConfig = _with_defaults("SVDConfig", [FitSettings, SVDArch], {**FIT["svd"], **ARCH["svd"]},
                           doc="The SVD member: training and architecture.")
XDeepFMConfig = _with_defaults("XDeepFMConfig", [FitSettings, XDeepFMArch],
                               {**FIT["xdeepfm"], **ARCH["xdeepfm"]},
                               doc="The xDeepFM member: training and architecture.")
AutoIntConfig = _with_defaults("AutoIntConfig", [FitSettings, AutoIntArch],
                               {**FIT["autoint"], **ARCH["autoint"]},
                               doc="The AutoInt member: training and architecture.")
LightGCNConfig = _with_defaults(
    "LightGCNConfig", [FitSettings, LightGCNArch],
    {**FIT["lightgcn"], **{k: v for k, v in ARCH["lightgcn"].items() if k != "history"}},
    doc="The LightGCN member: training and architecture (selectable: --models/--algorithms).")
# the sequence objective (`pakd.train.sequence`) reads these (ranking_loss: full or softmax,
# the latter over `negatives` items shared by a step); the sampling rule and the monitor do
# not apply to it (popularity draws with the logQ correction; each output its own best
# epoch)
_SEQUENCE_FIT = ["epochs", "batch_size", "lr", "weight_decay", "l2", "ranking_loss",
                 "negatives", "rating_loss_weight", "ranking_loss_weight", "patience"]
SASRecConfig = _with_defaults(
    "SASRecConfig", [FitSettings, SASRecArch],
    {**FIT["sasrec"], **{k: v for k, v in ARCH["sasrec"].items() if k != "history"}},
    only=_SEQUENCE_FIT + list(SASRecArch.model_fields),
    doc="The SASRec member: training and architecture (selectable: --models/--algorithms). "
        "batch_size counts predicted items per step.")


class LightweightRows(Section):
    # 0.6, with 64 + 64 factors and ratios 0.4 / 0.8, chosen on the valid part against 1000,
    # 2000 and 3000 rows and the earlier every-item student (docs/decisions.md)
    item_coverage: float = Field(
        0.6, description="the most rated items holding this share of train ratings own ID "
        "rows; the rest are side fields (1: all)", gt=0, le=1)


# item_rows is derived from item_coverage and the data (`pakd.distill.students`)
LightweightConfig = _with_defaults(
    "LightweightConfig", [LightweightArch, LightweightRows],
    {k: v for k, v in ARCH[LIGHTWEIGHT].items() if k != "item_rows"},
    doc="The lightweight_model student's architecture (the earlier default student).")
StudentConfig = _with_defaults(
    "StudentConfig", [StudentArch], STUDENT_ARCH,
    doc="The tower student's architecture (the default student; sizes the data gives - "
        "rows per bucket, the history - come from the split).")


def arch_of(section: BaseModel, kind: str) -> dict:
    """The architecture entries of a member's (or a student's) section."""
    cls = {LIGHTWEIGHT: LightweightArch, STUDENT: StudentArch}.get(kind) or ARCH_SECTIONS[kind]
    return {k: getattr(section, k) for k in cls.model_fields}


class TrainConfig(Section):
    models: Annotated[list[MEMBERS], AfterValidator(_non_empty("teacher"))] = _f(
        list(DEFAULT_MEMBERS), f"teachers to train ({MEMBER_NAMES})",
        flag="--models")


class EnsembleConfig(Section):
    algorithms: list[MEMBERS] = _f(list(DEFAULT_MEMBERS), f"ensemble members ({MEMBER_NAMES})",
                                   flag="--algorithms")
    weights: list[float] | Literal["auto"] = _f(
        "auto", "auto: rating weights by non-negative least squares and ranking weights by "
        "--mix-fit, both on the valid part; or one weight per member (renormalised per "
        "output; the origin report's 0.4,0.4,0.2 with --tasks ranking,rating,balance)",
        flag="--weights")
    rating_offset: bool = _f(
        True, "auto rating weights also fit a constant added to the mix (either sign)",
        flag="--rating-offset")
    mix_fit: Literal["ndcg", "likelihood"] = _f(
        "ndcg", "how auto ranking weights are fitted on the valid part: ndcg (the best "
        "NDCG@10 on a grid of convex weights) or likelihood (the valid items' log-softmax "
        "over each user's unseen items)", flag="--mix-fit")
    standardise: Literal["user", "catalogue"] = _f(
        "user", "each ranking member's logits are z-scored before they are mixed: per user "
        "(over the user's unseen items) or per catalogue (one mean and std from "
        "--calibration-users users)", flag="--standardise")
    tasks: list[Literal["rating", "ranking", "balance"]] = _f(
        [], "per member: which output it feeds (rating, ranking or balance = both); empty: "
        "balance for members that predict ratings, ranking for the others (ease)",
        flag="--tasks")
    retrieval: MEMBERS = _f("svd", "retrieval stage whose top-N candidates each member and the "
                            "ensemble re-rank in the re-ranking table (a dot-product ranker "
                            "or ease)", flag="--retrieval")
    rerank_n: list[int] = _f([50, 100, 200], "candidates per user in the re-ranking table "
                             "(empty: no table)", flag="--rerank-n")
    calibration_users: int = _f(128, "users whose catalogue scores standardise each member's "
                                "ranking logit (--standardise catalogue)",
                                flag="--calibration-users", ge=1)
    cache_limit: int = _f(50_000_000, "cache member score matrices (users x items) up to this "
                          "many entries in RUN/teachers/", flag="--score-cache-limit", ge=0)

    @field_validator("weights", mode="before")
    @classmethod
    def _auto(cls, v):
        if isinstance(v, list) and len(v) == 1 and str(v[0]).lower() == "auto":
            return "auto"
        return v

    @field_validator("weights")
    @classmethod
    def _finite_weights(cls, v):
        if isinstance(v, list):
            if any(not math.isfinite(w) or w < 0 for w in v):
                raise ValueError(f"weights must be finite and not negative, got {v}")
            if not any(w > 0 for w in v):
                raise ValueError(f"at least one weight must be positive, got {v}")
        return v

    @field_validator("rerank_n")
    @classmethod
    def _positive_n(cls, v):
        if any(n <= 0 for n in v):
            raise ValueError(f"candidate counts must be positive, got {v}")
        return v

    @field_validator("algorithms")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"each member once: {','.join(v)} repeats one")
        if not v:
            raise ValueError("name at least one member")
        return v

    @model_validator(mode="after")
    def _one_per_member(self):
        """Counts that must match the members, checked before anything is written (a wrong
        count used to stop only in the ensemble stage, after run.yaml was rewritten)."""
        n, names = len(self.algorithms), ",".join(self.algorithms)
        if isinstance(self.weights, list) and len(self.weights) != n:
            raise ValueError(f"--weights has {len(self.weights)} numbers for the {n} members "
                             f"of --algorithms {names}; give one per member, or auto")
        if self.tasks and len(self.tasks) != n:
            raise ValueError(f"--tasks has {len(self.tasks)} entries for the {n} members of "
                             f"--algorithms {names}; give one per member")
        return self


# ----------------------------------------------------------------------------- Fisher

class FisherConfig(Section):
    teacher: TEACHER_CHOICES = _f(
        "ensemble", "which teacher to analyse (ensemble = every member)",
        aliases=["--teacher", "--teacher-type"])
    target_layers: Annotated[list[str], AfterValidator(_non_empty("layer (or all)"))] = _f(
        ["all"], "layers to report: all, or names/prefixes such as cin,dnn.0,embedding",
        flag="--target-layers")
    focus_tasks: Annotated[list[Literal["ranking", "rating", "ensemble"]],
                           AfterValidator(_non_empty("objective"))] = _f(
        ["ranking", "rating", "ensemble"], "objectives: rating (Gaussian), ranking (Bernoulli), "
        "ensemble (the ensemble's combined loss)", flag="--focus-tasks")
    fisher: Literal["empirical", "true", "both"] = _f(
        "both", "empirical (observed labels), true (labels drawn from the model) or both",
        flag="--fisher")
    sample: int = _f(10000, "train ratings used (each with one sampled negative); 0 = all", ge=0)
    mc_samples: int = _f(1, "label draws per example for the true Fisher (0 = closed form)",
                         flag="--mc-samples", ge=0)
    batch: int = _f(256, "examples per per-example-gradient batch", ge=1)
    validate_units: int = _f(60, "units removed one at a time per member to check predictions",
                             flag="--validate-units", ge=0)
    # every removal is measured on these examples: all of a large valid part made the checks
    # the Fisher stage's longest step (ML-1M's shape: 91,632 valid ratings, xDeepFM)
    check_sample: int = _f(20000, "valid and test ratings each check measures on (a seeded "
                           "sample; 0 = all)", flag="--check-sample", ge=0)
    check_train_sample: bool = _f(False, "also measure each removal on the train sample the "
                                  "Fisher was estimated from (what the Fisher claims to "
                                  "predict; adds half again to the checks)",
                                  flag="--check-train-sample")
    plan_ratio: float = _f(0.2, "parameter reduction the recommended plan aims at",
                           flag="--plan-ratio", gt=0, lt=1)
    plan_fisher: Literal["empirical", "true"] = _f("true", "Fisher kind the plan uses",
                                                   flag="--plan-fisher")
    plan_eval_users: int = _f(200, "users (a seeded sample) ranked to measure the plan's NDCG "
                              "change, before and after on the same users (0 = all)",
                              flag="--plan-eval-users", ge=0)
    friendliness_threshold: float = _f(0.01, "cost share under which removed units count as "
                                       "free for pruning friendliness",
                                       flag="--friendliness-threshold", gt=0, lt=1)


# ----------------------------------------------------------------------------- distillation

def _distinct_in(ok, what: str, one: str):
    """A validator for a list setting: every value passes ``ok`` (NaN fails any range),
    each value once."""
    def check(v: list[float]) -> list[float]:
        bad = [x for x in v if not ok(x)]
        if bad:
            raise ValueError(f"{what}; got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"each {one} once: {v} repeats one")
        return v
    return check


def _budgets(v: list) -> list[str]:
    """Each entry a share (3%), a parameter count (48000, 48k) or a ratio (0.4), once."""
    from ..distill.budgets import parse
    if not v:
        raise ValueError("give at least one budget (3%, 48000 or 0.4)")
    labels = [parse(x).label for x in v]
    if len(set(labels)) != len(labels):
        raise ValueError(f"each budget once: {','.join(labels)} repeats one")
    return labels


METHOD_NAMES = Literal["fisher_kd", "taylor_kd", "magnitude_kd", "random_kd", "fisher_ft",
                       "scratch", "final_kd", "mf_labels", "lightweight_kd", "dense_kd"]


class _DistillOwn(Section):
    teacher: TEACHER_CHOICES = _f("ensemble", "teacher to distil",
                                  aliases=["--teacher", "--teacher-type"])
    student: Literal["tower_student", "lightweight_model", "svd", "xdeepfm", "autoint"] = _f(
        "tower_student", "student: tower_student (items in one factor space, users built from "
        "their rated items), lightweight_model (the earlier two-factorisation student) or a "
        "copy of a trained teacher member", flag="--student")
    budgets: Annotated[list[str], BeforeValidator(lambda v: [str(x) for x in v]
                                                  if isinstance(v, (list, tuple)) else v),
                       AfterValidator(_budgets)] = _f(
        ["1%", "3%", "5%", "10%"], "student sizes of the sweep: shares of the three origin "
        "members' parameters (3%), parameter counts (48000, 48k) or pruning ratios of the "
        "dense student (0.4)", flag="--budgets",
        aliases=["--pruning-ratio", "--pruning-ratios"])
    methods: list[METHOD_NAMES] = _f(
        ["fisher_kd", "mf_labels", "dense_kd"],
        "fisher_kd (PAKD: mask Fisher), taylor_kd (first + second order), magnitude_kd, "
        "random_kd, fisher_ft (Fisher pruning, labels only); baselines of fisher_kd's final "
        "architecture: scratch (labels only), final_kd (KD, never pruned); mf_labels (a plain "
        "MF of the budget's size, labels only, its L2 chosen on valid); lightweight_kd (the earlier "
        "lightweight_model student, fisher_kd at the same budget); dense_kd (the unpruned "
        "student with KD, once)", flag="--methods")
    ablation: str | None = _f(None, "the budget at which fisher_kd is also trained without "
                              "each distillation term in turn (none: no ablation)",
                              flag="--ablation")

    distill_tasks: list[Literal["ranking", "rating", "feature"]] = _f(
        ["ranking", "rating", "feature"], "distillation losses used", flag="--distill-tasks")
    kd_ranking_weight: float = _f(1.0, "weight of the listwise ranking distillation loss "
                                  "(chosen on the valid part)",
                                  flag="--kd-ranking-weight", ge=0)
    kd_rating_weight: float = _f(2.0, "weight of the rating distillation loss (chosen on the "
                                 "valid part, like --kd-ranking-weight)",
                                 flag="--kd-rating-weight", ge=0)
    kd_rating_unobserved: int = _f(1, "rating KD also on this many unobserved items per "
                                   "rated pair (drawn once, seeded)", flag="--kd-unobserved",
                                   ge=0)
    kd_feature_weight: float = _f(0.2, "weight of the feature distillation loss",
                                  flag="--kd-feature-weight", ge=0)
    kd_ranking: Literal["kl", "top"] = _f(
        "kl", "ranking distillation: kl (the teacher's whole distribution over unseen items) "
        "or top (the teacher's top --kd-top items in order, rank-discounted Plackett-Luce)",
        flag="--kd-ranking")
    kd_top: int = _f(50, "--kd-ranking top: length of the teacher's list", flag="--kd-top",
                     ge=1)
    label_loss_weight: float = _f(0.3, "weight of the ground-truth rating and ranking losses "
                                  "when distilling", flag="--label-loss-weight",
                                  aliases=["--label-weight"], ge=0)
    temperature: float = _f(1.0, "softmax temperature of listwise distillation, applied on "
                            "top of the teacher's calibrated one (scores divided by the "
                            "temperature that best predicts the valid items)",
                            flag="--temperature", gt=0)
    kd_list: Literal["catalogue", "candidates"] = _f(
        "catalogue", "ranking KD over every unseen item of each user in a batch (catalogue; "
        "dot-product students) or over lists of the teacher's top items plus random ones "
        "(candidates)", flag="--kd-list")
    catalogue_head: int = _f(1024, "--kd-list catalogue with a teacher matrix over the memory "
                             "budget: each user's N likeliest teacher items kept, the rest of "
                             "the mass spread evenly", flag="--catalogue-head", ge=1)
    label_ranking: Literal["full", "softmax"] = _f(
        "full", "the labels' ranking loss: softmax over the whole catalogue (full; dot-product "
        "students) or over --negatives sampled items (softmax)", flag="--label-ranking")
    list_top: int = _f(30, "--kd-list candidates: teacher top-ranked unseen items in each "
                       "user's candidate list", flag="--list-top", ge=1)
    list_random: int = _f(30, "--kd-list candidates: uniformly sampled items added to each "
                          "candidate list", flag="--list-random", ge=0)
    list_users: int = _f(128, "--kd-list candidates: users per step", flag="--list-users",
                         ge=1)
    feature_dim: int = _f(32, "teacher hidden reduced by PCA to this many components",
                          flag="--feature-dim", ge=1)
    prune_from: Literal["dense", "init"] = _f(
        "dense", "where the pruning students with KD start: dense (the trained dense_kd "
        "student, pruned and fine-tuned for --prune-epochs; the Fisher of a trained model "
        "says what each unit does) or init (a fresh student trained for --epochs while "
        "pruning)", flag="--prune-from")
    prune_epochs: int = _f(PRUNE_EPOCHS, "--prune-from dense: epochs of pruning and "
                           "fine-tuning", flag="--prune-epochs", ge=1)
    prune_stretch: float = _f(2.0, "--prune-from dense: a student that keeps at most "
                              "--stretch-below of the dense student's parameters prunes and "
                              "fine-tunes for --prune-epochs times this (its pruning phase, "
                              "--prune-until of the run, grows with it: gentler steps)",
                              flag="--prune-stretch", ge=1)
    stretch_below: float = _f(0.125, "share of the dense student's parameters at or below "
                              "which --prune-stretch applies", flag="--stretch-below", gt=0,
                              le=1)
    dense_from: str | None = _f(None, "--prune-from dense: a saved dense student (its path "
                                "without the suffix) to prune, in place of training dense_kd "
                                "first; of the student settings' kind and architecture "
                                "(pakd tune's chosen settings name the run's)",
                                flag="--dense-from")
    prune_until: float = _f(0.3, "share of training over which pruning rises (cubic) to the "
                            "target", flag="--prune-until", gt=0, le=1)
    prune_steps: int = _f(6, "pruning steps on the way to the target", flag="--prune-steps",
                          ge=1)
    group_floor: float = _f(0.05, "pruning keeps at least this share of each group's units "
                            "(chosen on the valid part)",
                            flag="--group-floor", ge=0, lt=1)
    fisher_balance: list[float] = _f(
        [1.0, 3.0], "Fisher pruning: weights of the rated-pair and candidate-list losses, each "
        "first normalised to a total sensitivity of one; empty: the raw Fisher sum",
        flag="--fisher-balance")
    workers: int = _f(0, "students trained at once, each in its own single-threaded process "
                      "(0 = one per torch thread of the run; 1 = one at a time, in this "
                      "process)", flag="--distill-workers", ge=0)
    check_units: int = _f(100, "dense_kd units removed one at a time to check the pruning "
                          "criterion (0: no check)", flag="--check-units", ge=0)
    rmse_tolerance: float = _f(0.02, "best student: valid RMSE at most (1 + this) x the "
                               "teacher's", flag="--rmse-tolerance", ge=0)
    ndcg_tolerance: float = _f(0.05, "best student: valid NDCG@10 at least (1 - this) x the "
                               "teacher's", flag="--ndcg-tolerance", ge=0)


class _DistillRules(Section):
    """Checks across the distillation settings (the section is assembled by
    `_with_defaults`, so they live in its base)."""

    @model_validator(mode="before")
    @classmethod
    def _ablation_off(cls, data):
        """``--ablation false``/``off``/``none`` (and an old run's False): no ablation."""
        v = data.get("ablation") if isinstance(data, dict) else None
        if v is False or (isinstance(v, str) and v.strip().lower() in ("false", "off", "none",
                                                                        "no", "")):
            data = {**data, "ablation": None}
        return data

    @model_validator(mode="after")
    def _ablation_at_a_budget(self):
        """The ablation runs at one of the budgets (``true``: the smallest student)."""
        from ..distill.budgets import parse
        if self.ablation is None:
            return self
        if str(self.ablation).lower() in ("true", "on", "yes"):
            budgets = [parse(b) for b in self.budgets]
            ratios = [b for b in budgets if b.kind == "ratio"]
            small = (max(ratios, key=lambda b: b.value) if ratios
                     else min(budgets, key=lambda b: b.value))
            object.__setattr__(self, "ablation", small.label)
            return self
        label = parse(self.ablation).label
        if label not in self.budgets:
            raise ValueError(f"--ablation {self.ablation} is not one of --budgets "
                             f"{','.join(self.budgets)}: give one of them, or none")
        object.__setattr__(self, "ablation", label)
        return self


DistillConfig = _with_defaults(
    "DistillConfig", [_DistillOwn, FitSettings], DISTILL_FIT,
    only=list(_DistillOwn.model_fields) + list(DISTILL_FIT),
    doc="The PAKD sweep: teacher, student, methods, losses, pruning schedule and the "
        "training budget every method shares.", base=_DistillRules)


def _memory_mode(v):
    """true/false of earlier runs: every model or none."""
    if isinstance(v, bool) or str(v).lower() in ("true", "false"):
        return "all" if str(v).lower() == "true" else "none"
    return v


class BenchConfig(Section):
    batch: int = _f(4096, "rows per throughput batch", ge=1)
    seconds: float = _f(0.3, "time per model and round: half throughput, half latency (at "
                        "least 3 batches and 10 queries)", gt=0)
    rounds: int = _f(3, "rounds of interleaved measurement (every model once per round, in "
                     "turn), so a change of machine load hits teacher and students alike", ge=1)
    memory: Annotated[Literal["all", "chosen", "none"], BeforeValidator(_memory_mode)] = _f(
        "chosen", "peak memory, each model in a fresh process: all (every student), chosen "
        "(the teacher, its members, the dense and the best student) or none")


class ServeConfig(Section):
    """`pakd serve`: what a request may ask and how the service answers. Per-invocation
    choices (the model, --host, --port, --token-file) stay command arguments; intra-op
    threads are the general ``threads`` setting (0 = all cores), as in every command."""
    max_batch: int = _f(1000, "most pairs per /score request; more answer 413",
                        flag="--max-batch", ge=1, le=100000)
    rate_limit: float = _f(100.0, "requests a second per client address, bursts of twice "
                           "that; 0 = no limit", flag="--rate-limit", ge=0, allow_inf_nan=False)
    fallback: Literal["popular"] | None = _f(
        None, "answer unknown users with the most rated items (popular); unset: 404",
        flag="--fallback")


class ExportConfig(Section):
    """`pakd export`: how the exported graphs are measured (threads: the general
    ``threads`` setting)."""
    seconds: float = _f(1.0, "seconds per speed measurement of the exported graphs "
                        "(--bench-seconds before)", gt=0, allow_inf_nan=False)


# ----------------------------------------------------------------------------- tuning

def _range(what: str, positive: bool = False):
    """A validator for a [low, high] setting of the search space (low == high: fixed)."""
    def check(v: list[float]) -> list[float]:
        if len(v) != 2 or not all(math.isfinite(x) for x in v) or v[0] > v[1] or v[0] < 0 \
                or (positive and v[0] <= 0):
            raise ValueError(f"{what}: give low,high with 0 {'<' if positive else '<='} low "
                             f"<= high; got {v}")
        return v
    return check


def _widths(v: list[str]) -> list[str]:
    """MLP choices: "none" or hidden sizes joined by "-" (64-32)."""
    out = []
    for x in v:
        x = str(x).strip().lower()
        if x not in ("none", "") and not all(p.isdigit() and int(p) > 0 for p in x.split("-")):
            raise ValueError(f"an MLP choice is none or hidden sizes joined by '-' (64-32); "
                             f"got {x!r}")
        out.append(x or "none")
    if not out:
        raise ValueError("give at least one MLP choice (none, 32, 64-32)")
    return out


IntRange = Annotated[list[int], AfterValidator(_range("an integer range", positive=True))]


class TuneConfig(Section):
    """`pakd tune`: the caps a student must meet, how long the study runs, and the space it
    searches. Every range is widened to hold the run's own setting, so the run's student is
    a point of the space (the study's first trial)."""
    max_params: int | None = _f(None, "cap: most parameters a student may keep (each trial's "
                                "budget is drawn within it)", flag="--max-params", ge=1)
    max_bytes: int | None = _f(None, "cap: largest saved weights file in bytes - parameters "
                               "plus the tables a student carries (its users' train histories, "
                               "token tables) (each trial's budget is drawn within it)",
                               flag="--max-bytes", ge=1)
    max_latency_ms: float | None = _f(None, "cap: median milliseconds to rank one user's whole "
                                      "catalogue on one thread, measured after each trial; "
                                      "trials over it stay in the study as infeasible",
                                      flag="--max-latency-ms", gt=0)
    trials: int = _f(0, "trials the study holds when this command ends (--resume runs the "
                     "missing ones); 0: only --timeout ends it", flag="--trials", ge=0)
    timeout: float = _f(1800.0, "seconds this command starts trials for (a running trial "
                        "finishes); 0: only --trials ends it", flag="--timeout", ge=0)
    jobs: int = _f(0, "trials run at once, each in its own single-threaded process sharing "
                   "the study (0: one per core, at most 2)", flag="--jobs", ge=0)
    study: str = _f("pakd-tune", "the study's name in the storage", flag="--study",
                    min_length=1, max_length=200)
    kinds: Annotated[list[Literal["tower_student", "lightweight_model"]],
                     AfterValidator(_non_empty("student kind"))] = _f(
        ["tower_student", "lightweight_model"], "student kinds searched",
        flag="--tune-kinds")
    criteria: Annotated[list[Literal["fisher", "taylor", "magnitude"]],
                        AfterValidator(_non_empty("criterion"))] = _f(
        ["fisher", "taylor", "magnitude"], "pruning criteria searched (fisher_kd, taylor_kd, "
        "magnitude_kd)", flag="--tune-criteria")
    dim: IntRange = _f([16, 128], "tower student: width of the item factor space (log scale)",
                       flag="--tune-dim")
    rank_dims: IntRange = _f([16, 128], "tower student: ranking dimensions (log scale)",
                             flag="--tune-rank-dims")
    rate_dims: IntRange = _f([8, 64], "tower student: rating dimensions (log scale)",
                             flag="--tune-rate-dims")
    buckets: IntRange = _f([2, 12], "tower student: popularity buckets of item rows",
                           flag="--tune-buckets")
    mlp: Annotated[list[str], BeforeValidator(lambda v: v if isinstance(v, list) else [v]),
                   AfterValidator(_widths)] = _f(
        ["none", "32"], "tower student: MLP choices on the rating side (none, or sizes "
        "joined by '-': 64-32)", flag="--tune-mlp")
    alpha: Annotated[list[float], AfterValidator(_range("alpha"))] = _f(
        [0.3, 1.0], "tower student: history normalisation exponent", flag="--tune-alpha")
    factors: IntRange = _f([16, 128], "lightweight student: rating and ranking factors, each "
                           "(log scale)", flag="--tune-factors")
    hidden: Annotated[list[str], BeforeValidator(lambda v: v if isinstance(v, list) else [v]),
                      AfterValidator(_widths)] = _f(
        ["none", "32", "64"], "lightweight student: MLP choices", flag="--tune-hidden")
    item_coverage: Annotated[list[float], AfterValidator(_range("item coverage", True))] = _f(
        [0.3, 1.0], "lightweight student: share of train ratings whose items own ID rows",
        flag="--tune-item-coverage")
    lr: Annotated[list[float], AfterValidator(_range("lr", positive=True))] = _f(
        [0.002, 0.03], "learning rate (log scale)", flag="--tune-lr")
    epochs: IntRange = _f([6, 24], "epochs of a student that starts fresh (init)",
                          flag="--tune-epochs")
    starts: Annotated[list[Literal["init", "dense"]],
                      AfterValidator(_non_empty("start"))] = _f(
        ["init", "dense"], "where a trial's student starts: init (a fresh student of the drawn "
        "architecture, trained while pruning) or dense (the run's trained dense_kd student, "
        "pruned and fine-tuned for the drawn prune epochs; its architecture is the run's, "
        "not drawn)", flag="--tune-starts")
    prune_epochs: IntRange = _f([2, 16], "epochs of pruning and fine-tuning a student that "
                                "starts from the run's dense student", flag="--tune-prune-epochs")
    kd_ranking_weight: Annotated[list[float], AfterValidator(_range("kd ranking weight"))] = _f(
        [0.0, 4.0], "weight of the ranking distillation loss", flag="--tune-kd-ranking-weight")
    kd_rating_weight: Annotated[list[float], AfterValidator(_range("kd rating weight"))] = _f(
        [0.0, 4.0], "weight of the rating distillation loss", flag="--tune-kd-rating-weight")
    kd_feature_weight: Annotated[list[float], AfterValidator(_range("kd feature weight"))] = _f(
        [0.0, 1.0], "weight of the feature distillation loss", flag="--tune-kd-feature-weight")
    label_loss_weight: Annotated[list[float], AfterValidator(_range("label weight", True))] = _f(
        [0.25, 2.0], "weight of the ground-truth losses (log scale)",
        flag="--tune-label-loss-weight")
    temperature: Annotated[list[float], AfterValidator(_range("temperature", True))] = _f(
        [0.5, 3.0], "listwise distillation temperature (log scale; fixed at the run's when the "
        "teacher's score matrix is over the memory budget)", flag="--tune-temperature")
    group_floor: Annotated[list[float], AfterValidator(_range("group floor"))] = _f(
        [0.0, 0.3], "share of each group's units pruning keeps", flag="--tune-group-floor")
    startup: int = _f(8, "trials drawn at random before the TPE sampler models the results",
                      flag="--tune-startup", ge=1)
    pruner: Literal["median", "none"] = _f(
        "median", "early stopping of bad trials: median (a trial whose best valid NDCG@10 so far "
        "is below the median of finished trials' at the same epoch stops) or none",
        flag="--tune-pruner")
    prune_startup: int = _f(4, "finished trials before the pruner stops any",
                            flag="--tune-prune-startup", ge=0)
    prune_warmup: int = _f(1, "epochs at the final size a trial trains before the pruner may "
                           "stop it", flag="--tune-prune-warmup", ge=0)
    latency_seconds: float = _f(0.3, "seconds each trial's latency is measured for",
                                flag="--tune-latency-seconds", gt=0)
    rmse_tolerance: float = _f(0.0, "the chosen trial: the best valid NDCG@10 among feasible "
                               "trials whose valid RMSE is at most (1 + this) x the first "
                               "trial's (the run's own settings)",
                               flag="--tune-rmse-tolerance", ge=0)

    @field_validator("max_latency_ms")
    @classmethod
    def _finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError("give a finite number of milliseconds")
        return v

    @model_validator(mode="after")
    def _one_cap(self):
        caps = [k for k in ("max_params", "max_bytes", "max_latency_ms")
                if getattr(self, k) is not None]
        if len(caps) > 1:
            raise ValueError(f"give one cap, not {' and '.join(caps)}: the study minimises "
                             "the size or the latency it caps")
        return self

    def caps(self) -> dict:
        """The caps given (name -> value)."""
        return {k: getattr(self, k) for k in ("max_params", "max_bytes", "max_latency_ms")
                if getattr(self, k) is not None}


# ----------------------------------------------------------------------------- the run

def _seed_range(v: int) -> int:
    if not 0 <= v <= 2**32 - 1:
        raise ValueError("a seed is an integer from 0 to 4294967295 (2^32-1, the range numpy "
                         "and torch accept)")
    return v


class RunConfig(Section):
    """Every setting of a run: the run-wide ones below and one section per stage or model
    (`data`, `split`, `eval`, `train`, one per member, `ensemble`, `fisher`, `student`,
    `lightweight`, `distill`, `bench`, `tune`, `serve`, `export`). Built by `build_config`,
    written resolved to RUN/run.yaml; `pakd config show` prints it."""
    seed: Annotated[int, AfterValidator(_seed_range)] = _f(
        0, "seed for every random choice (split, init, negatives, sampling): 0 .. 2^32-1",
        flag="--seed")
    threads: int = _f(0, "torch threads (0 = all cores); recorded with every timing",
                      flag="--threads", ge=0)
    quiet: bool = _f(False, "no progress bars and no library warnings; errors only",
                     flag="--quiet")
    resume: bool = _f(False, "continue where an interrupted command stopped: teacher epochs "
                      "from their last checkpoint, sweep students already finished with the "
                      "same settings and teacher are kept", flag="--resume")
    profile: Literal["quick", "default", "full"] = _f(
        "default", "quick: tiny budgets for smoke tests; default: teachers, PAKD and its "
        "main baselines at every budget; full: every control and the ablation (the evidence "
        "run)", flag="--profile")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    svd: SVDConfig = Field(default_factory=SVDConfig)
    xdeepfm: XDeepFMConfig = Field(default_factory=XDeepFMConfig)
    autoint: AutoIntConfig = Field(default_factory=AutoIntConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    als: ALSConfig = Field(default_factory=ALSConfig)
    knn: KNNConfig = Field(default_factory=KNNConfig)
    uknn: UserKNNConfig = Field(default_factory=UserKNNConfig)
    knn_interp: InterpolatedKNNConfig = Field(default_factory=InterpolatedKNNConfig)
    lightgcn: LightGCNConfig = Field(default_factory=LightGCNConfig)
    sasrec: SASRecConfig = Field(default_factory=SASRecConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    fisher: FisherConfig = Field(default_factory=FisherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    lightweight: LightweightConfig = Field(default_factory=LightweightConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
