"""Every setting of every stage, validated by pydantic.

Settings come, later ones winning, from: defaults, the chosen ``--profile``, a YAML file
(``--config``) or a run directory's ``run.yaml``, then command-line options. Unknown keys
are rejected with a message naming them. Each field's ``description`` is its ``--help``
text; each field is reachable on the command line as ``--<section>-<name>`` unless it
declares a shorter ``flag``. Underscore spellings of every flag are accepted too.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError


def _f(default, desc: str, flag: str | None = None, aliases: list[str] | None = None, **kw):
    extra = {"flag": flag} if flag else {}
    if aliases:
        extra["aliases"] = aliases
    return Field(default, description=desc, json_schema_extra=extra or None, **kw)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    dataset: str = _f("ml-latest-small", "MovieLens release (ml-100k, ml-1m, ml-10m, ml-20m, "
                      "ml-25m, ml-32m, ml-latest, ml-latest-small) or a path to a CSV/TSV/"
                      "Parquet ratings file", flag="--dataset")
    dir: str | None = _f(None, "folder with the release's files (default: embedded copy for "
                         "ml-latest-small, else the cache)", flag="--data-dir")
    cache: str | None = _f(None, "download cache (default $PAKD_CACHE or ~/.cache/pakd)",
                           flag="--cache-dir")
    download: bool = _f(True, "download a missing MovieLens release (MD5-checked)",
                        flag="--download")
    base_url: str = _f("https://files.grouplens.org/datasets/movielens",
                       "where MovieLens zips are downloaded from", flag="--base-url")
    columns: dict[str, str] = _f({}, "generic tables: column mapping, e.g. "
                                 "user=userId,item=movieId,rating=rating,timestamp=ts",
                                 flag="--columns")
    sep: str | None = _f(None, "generic tables: delimiter (default from the extension)",
                         flag="--sep")
    encoding: str = _f("utf-8", "generic tables: text encoding", flag="--encoding")
    rating_min: float | None = _f(None, "generic tables: lowest valid rating (default: observed)",
                                  flag="--rating-min")
    rating_max: float | None = _f(None, "generic tables: highest valid rating (default: observed)",
                                  flag="--rating-max")
    duplicates: Literal["error", "first", "last", "mean"] = _f(
        "error", "rule for a repeated (user, item) pair: error, or keep the first/last by "
        "time, or the mean", flag="--duplicates")
    user_features: str | None = _f(None, "generic tables: user feature file", flag="--user-features")
    item_features: str | None = _f(None, "generic tables: item feature file", flag="--item-features")
    user_key: str | None = _f(None, "ID column of the user feature file (default: the user column)",
                              flag="--user-key")
    item_key: str | None = _f(None, "ID column of the item feature file (default: the item column)",
                              flag="--item-key")
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
    min_user_ratings: int = _f(1, "drop users with fewer ratings", flag="--min-user-ratings", ge=1)
    min_item_ratings: int = _f(1, "drop items with fewer ratings", flag="--min-item-ratings", ge=1)
    n_buckets: int = _f(10, "quantile buckets for numeric fields (e.g. release year)",
                        flag="--n-buckets", ge=1)
    max_tokens: int = _f(16, "most tokens kept per multi-valued cell", flag="--max-tokens", ge=1)


class SplitConfig(Section):
    method: Literal["user_ratio", "global_ratio", "temporal", "user_last_k", "leave_one_out"] = _f(
        "user_ratio", "user_ratio (per-user random), global_ratio, temporal (global time cut), "
        "user_last_k, leave_one_out", flag="--split")
    ratios: list[float] = _f([0.8, 0.1, 0.1], "train,valid,test shares for ratio/temporal splits",
                             flag="--ratios")
    k: int = _f(1, "ratings per user held out for valid and for test by user_last_k",
                flag="--last-k", ge=1)

    @field_validator("ratios")
    @classmethod
    def _three(cls, v):
        if len(v) != 3 or min(v) < 0 or abs(sum(v) - 1) > 1e-6 or v[0] <= 0:
            raise ValueError("need three non-negative shares summing to 1 with train > 0")
        return v


class EvalConfig(Section):
    ks: list[int] = _f([10, 20], "cut-offs K for top-K metrics", flag="--ks")
    positive_above: float = _f(3.0, "binary protocol: rating > this is positive",
                               flag="--positive-above")
    negative_below: float = _f(3.0, "binary protocol: rating < this is negative",
                               flag="--negative-below")
    relevant_min_rating: float | None = _f(None, "top-K: held-out items count as relevant only "
                                           "from this rating up (default: all)",
                                           flag="--relevant-min-rating")
    chunk: int = _f(512, "users scored at once in full ranking", flag="--eval-chunk", ge=1)


class FitConfig(Section):
    """How one model is trained (each model section repeats these with its own defaults)."""
    epochs: int = Field(30, description="most epochs (early stopping usually ends sooner)", ge=1)
    batch_size: int = Field(1024, description="observed ratings per step", ge=1)
    lr: float = Field(1e-3, description="AdamW learning rate", gt=0)
    weight_decay: float = Field(1e-5, description="AdamW decoupled weight decay of dense layers", ge=0)
    l2: float = Field(0.0, description="L2 on the embedding rows a step touches (Surprise-style)", ge=0)
    negatives: int = Field(4, description="sampled unobserved items per observed rating", ge=1)
    ranking_loss: Literal["bce", "bpr", "softmax"] = Field(
        "bce", description="bce (pointwise), bpr (pairwise) or softmax (sampled softmax over "
        "the positive and its negatives)")
    rating_weight: float = Field(1.0, description="weight of the rating MSE", ge=0)
    ranking_weight: float = Field(1.0, description="weight of the ranking loss", ge=0)
    patience: int = Field(3, description="epochs without validation improvement before stopping", ge=1)
    monitor: Literal["loss", "rmse", "rank_loss", "per_task"] = Field(
        "loss", description="validation figure that picks the best epoch: the weighted loss of "
        "both tasks, the rating RMSE, the ranking loss, or per_task (each output keeps its own "
        "best epoch; for models whose outputs share no parameters)")


class SVDConfig(FitConfig):
    """Defaults measured on ml-latest-small (valid split): sampled softmax with 20 negatives
    ranks best; L2 0.05 on touched rows keeps the rating factors from overfitting."""
    epochs: int = Field(40, description="most epochs (early stopping usually ends sooner)", ge=1)
    batch_size: int = Field(4096, description="observed ratings per step", ge=1)
    lr: float = Field(0.005, description="AdamW learning rate", gt=0)
    l2: float = Field(0.05, description="L2 on the embedding rows a step touches (Surprise-style)", ge=0)
    negatives: int = Field(20, description="sampled unobserved items per observed rating", ge=1)
    ranking_loss: Literal["bce", "bpr", "softmax"] = Field(
        "softmax", description="bce (pointwise), bpr (pairwise) or softmax (sampled softmax over "
        "the positive and its negatives)")
    monitor: Literal["loss", "rmse", "rank_loss", "per_task"] = Field(
        "per_task", description="validation figure that picks the best epoch (per_task: rating "
        "and ranking factors each keep their own best epoch)")
    factors: int = Field(64, description="rating factors", ge=1)
    rank_factors: int = Field(64, description="ranking factors (0 = share the rating factors)",
                              ge=0)
    init_std: float = Field(0.05, description="std of the factor initialisation", gt=0)


class XDeepFMConfig(FitConfig):
    """Architecture defaults are the paper's; one negative per rating keeps an epoch near 23 s
    on 2 cores (two negatives: RMSE -0.004, +70% time). The ensemble reads xDeepFM's rating,
    so its best epoch is the one with the best valid RMSE."""
    monitor: Literal["loss", "rmse", "rank_loss", "per_task"] = Field(
        "rmse", description="validation figure that picks the best epoch: the weighted loss of "
        "both tasks, the rating RMSE, or the ranking loss")
    epochs: int = Field(12, description="most epochs (early stopping usually ends sooner)", ge=1)
    batch_size: int = Field(4096, description="observed ratings per step", ge=1)
    lr: float = Field(0.002, description="AdamW learning rate", gt=0)
    negatives: int = Field(1, description="sampled unobserved items per observed rating", ge=1)
    embed_dim: int = Field(16, description="field embedding width", ge=1)
    cin_layers: list[int] = Field([128, 128], description="CIN feature maps per layer (split-half)")
    dnn: list[int] = Field([400, 400], description="DNN hidden sizes")
    dropout: float = Field(0.0, description="DNN dropout", ge=0, lt=1)


class AutoIntConfig(FitConfig):
    """AutoInt feeds both ensemble outputs by default (task balance), so its best epoch is the
    one with the lowest valid loss of both tasks. Measured on ml-latest-small (seed 0) against
    picking by RMSE: ensemble test RMSE 0.8419 vs 0.8468, NDCG@10 0.2230 vs 0.1996."""
    monitor: Literal["loss", "rmse", "rank_loss", "per_task"] = Field(
        "loss", description="validation figure that picks the best epoch: the weighted loss of "
        "both tasks, the rating RMSE, or the ranking loss")
    epochs: int = Field(20, description="most epochs (early stopping usually ends sooner)", ge=1)
    batch_size: int = Field(2048, description="observed ratings per step", ge=1)
    lr: float = Field(0.002, description="AdamW learning rate", gt=0)
    negatives: int = Field(1, description="sampled unobserved items per observed rating", ge=1)
    embed_dim: int = Field(16, description="field embedding width", ge=1)
    layers: int = Field(3, description="interacting layers", ge=1)
    heads: int = Field(2, description="attention heads per layer", ge=1)
    head_dim: int = Field(32, description="units per head", ge=1)
    dnn: list[int] = Field([], description="DNN branch hidden sizes (AutoInt+); empty = AutoInt")
    dropout: float = Field(0.0, description="DNN dropout", ge=0, lt=1)


TEACHERS = ("svd", "xdeepfm", "autoint")   # also the order that seeds each member


class TrainConfig(Section):
    models: list[Literal["svd", "xdeepfm", "autoint"]] = _f(
        list(TEACHERS), "teachers to train", flag="--models")
    resume: bool = _f(False, "continue interrupted trainings from their last checkpoint",
                      flag="--resume")


class EnsembleConfig(Section):
    algorithms: list[Literal["svd", "xdeepfm", "autoint"]] = _f(
        list(TEACHERS), "ensemble members", flag="--algorithms")
    weights: list[float] | Literal["auto"] = _f(
        [0.4, 0.4, 0.2], "member weights (renormalised per output), or auto: rating weights by "
        "non-negative least squares, ranking weights by validation NDCG@10", flag="--weights")
    tasks: list[Literal["rating", "ranking", "balance"]] = _f(
        ["ranking", "rating", "balance"], "per member: which output it feeds (rating, ranking "
        "or balance = both)", flag="--tasks")
    calibration_users: int = _f(128, "users whose catalogue scores standardise each member's "
                                "ranking logit", flag="--calibration-users", ge=1)
    cache_limit: int = _f(50_000_000, "cache member score matrices (users x items) up to this "
                          "many entries in RUN/teachers/", flag="--score-cache-limit", ge=0)

    @field_validator("weights", mode="before")
    @classmethod
    def _auto(cls, v):
        if isinstance(v, list) and len(v) == 1 and str(v[0]).lower() == "auto":
            return "auto"
        return v


class FisherConfig(Section):
    teacher: Literal["ensemble", "svd", "xdeepfm", "autoint"] = _f(
        "ensemble", "which teacher to analyse (ensemble = every member)", flag="--teacher",
        aliases=["--teacher-type"])
    target_layers: list[str] = _f(["all"], "layers to report: all, or names/prefixes such as "
                                  "cin,dnn.0,embedding", flag="--target-layers")
    focus_tasks: list[Literal["ranking", "rating", "ensemble"]] = _f(
        ["ranking", "rating", "ensemble"], "objectives: rating (Gaussian), ranking (Bernoulli), "
        "ensemble (the ensemble's combined loss)", flag="--focus-tasks")
    fisher: Literal["empirical", "true", "both"] = _f(
        "both", "empirical (observed labels), true (labels drawn from the model) or both",
        flag="--fisher")
    sample: int = _f(10000, "train ratings used (each with one sampled negative); 0 = all",
                     flag="--fisher-sample", ge=0)
    mc_samples: int = _f(1, "label draws per example for the true Fisher (0 = closed form)",
                         flag="--mc-samples", ge=0)
    batch: int = _f(256, "examples per per-example-gradient batch", flag="--fisher-batch", ge=1)
    validate_units: int = _f(60, "units removed one at a time per member to check predictions",
                             flag="--validate-units", ge=0)
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


class DistillConfig(Section):
    teacher: Literal["ensemble", "svd", "xdeepfm", "autoint"] = _f(
        "ensemble", "teacher to distil", flag="--teacher")
    student: Literal["lightweight_model", "svd", "xdeepfm", "autoint"] = _f(
        "lightweight_model", "student: lightweight_model (MF + small MLP over the same fields) "
        "or a copy of a trained teacher member", flag="--student")
    student_factors: int = _f(32, "lightweight_model: rating factors", flag="--student-factors",
                              ge=1)
    student_rank_factors: int = _f(32, "lightweight_model: ranking factors",
                                   flag="--student-rank-factors", ge=1)
    student_hidden: list[int] = _f([64], "lightweight_model: MLP hidden sizes",
                                   flag="--student-hidden")
    pruning_ratio: float | None = _f(None, "one pruning ratio (share of the student's "
                                     "parameters removed); overrides --ratios",
                                     flag="--pruning-ratio", ge=0, lt=1)
    ratios: list[float] = _f([0.5, 0.75], "pruning ratios of the sweep", flag="--ratios")
    methods: list[Literal["fisher_kd", "magnitude_kd", "random_kd", "fisher_ft", "scratch"]] = _f(
        ["fisher_kd", "magnitude_kd", "random_kd", "fisher_ft", "scratch"],
        "fisher_kd (PAKD), magnitude_kd, random_kd, fisher_ft (labels only), scratch (final "
        "architecture from scratch, labels only)", flag="--methods")
    distill_tasks: list[Literal["ranking", "rating", "feature"]] = _f(
        ["ranking", "rating", "feature"], "distillation losses used", flag="--distill-tasks")
    ranking_weight: float = _f(0.4, "listwise ranking distillation weight",
                               flag="--kd-ranking-weight", ge=0)
    rating_weight: float = _f(0.4, "rating distillation weight", flag="--kd-rating-weight", ge=0)
    feature_weight: float = _f(0.2, "feature distillation weight", flag="--kd-feature-weight", ge=0)
    label_weight: float = _f(1.0, "weight of the ground-truth rating and ranking losses",
                             flag="--label-weight", ge=0)
    temperature: float = _f(1.0, "softmax temperature of listwise distillation",
                            flag="--temperature", gt=0)
    list_top: int = _f(30, "teacher top-ranked unseen items in each user's candidate list",
                       flag="--list-top", ge=1)
    list_random: int = _f(30, "uniformly sampled items added to each candidate list",
                          flag="--list-random", ge=0)
    list_users: int = _f(128, "users per step for listwise distillation", flag="--list-users", ge=1)
    feature_dim: int = _f(32, "teacher hidden reduced by PCA to this many components",
                          flag="--feature-dim", ge=1)
    epochs: int = _f(16, "training epochs per student (same budget for every method)",
                     flag="--distill-epochs", ge=1)
    batch_size: int = _f(2048, "observed ratings per step", flag="--distill-batch-size", ge=1)
    lr: float = _f(0.01, "AdamW learning rate", flag="--distill-lr", gt=0)
    weight_decay: float = _f(1e-5, "AdamW weight decay of dense layers",
                             flag="--distill-weight-decay", ge=0)
    l2: float = _f(0.05, "L2 on touched embedding rows", flag="--distill-l2", ge=0)
    negatives: int = _f(4, "sampled negatives per rating for the label ranking loss (a sampled "
                        "softmax, as the SVD teacher's)", flag="--distill-negatives", ge=1)
    prune_until: float = _f(0.3, "share of training over which pruning rises (cubic) to the "
                            "target", flag="--prune-until", gt=0, le=1)
    prune_steps: int = _f(6, "pruning steps on the way to the target", flag="--prune-steps", ge=1)
    fisher_balance: list[float] = _f(
        [1.0, 3.0], "Fisher pruning: weights of the rated-pair and candidate-list losses, each "
        "normalised to a total sensitivity of one first (so losses on different scales count "
        "by weight, not by unit); an empty list uses the raw Fisher sum. 1,3 was chosen on "
        "validation (ml-latest-small): raw sums kept rating factors that only overfit",
        flag="--fisher-balance")
    patience: int = _f(3, "epochs without validation improvement (after the target is "
                       "reached) before stopping", flag="--distill-patience", ge=1)
    rmse_tolerance: float = _f(0.02, "best student: RMSE at most (1 + this) x the teacher's",
                               flag="--rmse-tolerance", ge=0)
    ndcg_tolerance: float = _f(0.05, "best student: NDCG@10 at least (1 - this) x the teacher's",
                               flag="--ndcg-tolerance", ge=0)
    bench_batch: int = _f(4096, "rows per throughput batch", flag="--bench-batch", ge=1)
    bench_seconds: float = _f(3.0, "time budget per latency measurement", flag="--bench-seconds",
                              gt=0)

    @property
    def sweep_ratios(self) -> list[float]:
        return [self.pruning_ratio] if self.pruning_ratio is not None else list(self.ratios)


class RunConfig(Section):
    seed: int = _f(0, "seed for every random choice (split, init, negatives, sampling)",
                   flag="--seed")
    threads: int = _f(0, "torch threads (0 = all cores); recorded with every timing",
                      flag="--threads", ge=0)
    quiet: bool = _f(False, "no progress bars, warnings and errors only", flag="--quiet")
    profile: Literal["quick", "default"] = _f("default", "quick: tiny budgets for smoke tests; "
                                              "default: the full experiment", flag="--profile")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    svd: SVDConfig = Field(default_factory=SVDConfig)
    xdeepfm: XDeepFMConfig = Field(default_factory=XDeepFMConfig)
    autoint: AutoIntConfig = Field(default_factory=AutoIntConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    fisher: FisherConfig = Field(default_factory=FisherConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)


# Settings each profile changes; anything not listed keeps its default.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    # small models and budgets: the whole pipeline in well under a minute (used by the tests)
    "quick": {
        "svd.epochs": 2, "svd.factors": 8, "svd.rank_factors": 8, "svd.negatives": 4,
        "xdeepfm.epochs": 1, "xdeepfm.embed_dim": 4, "xdeepfm.cin_layers": [8, 8],
        "xdeepfm.dnn": [16],
        "autoint.epochs": 1, "autoint.embed_dim": 4, "autoint.layers": 1, "autoint.heads": 1,
        "autoint.head_dim": 4,
        "ensemble.calibration_users": 32,
        "fisher.sample": 512, "fisher.validate_units": 12, "fisher.plan_eval_users": 50,
        "distill.ratios": [0.5], "distill.epochs": 2, "distill.student_factors": 8,
        "distill.student_rank_factors": 8, "distill.negatives": 4,
        "distill.student_hidden": [8], "distill.prune_steps": 2, "distill.list_top": 10,
        "distill.list_random": 10, "distill.bench_seconds": 0.1, "distill.feature_dim": 8,
    },
}


# ----------------------------------------------------------------------------- loading

def _format_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            valid = sorted(_section_fields(RunConfig, parent))
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            hint = f" (did you mean {'.'.join(map(str, parent + (close[0],)))}?)" if close else ""
            lines.append(f"unknown setting '{loc}'{hint}; valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"setting '{loc}': {e['msg']} (got {e.get('input')!r})")
    return f"invalid settings in {where}:\n  " + "\n  ".join(lines)


def _section_fields(model: type[BaseModel], path: tuple) -> list[str]:
    for p in path:
        ann = model.model_fields[p].annotation
        model = ann
    return list(model.model_fields)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("columns", "feature_kinds"):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _set_path(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def build_config(*, base: dict | None = None, yaml_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, profile: str | None = None) -> RunConfig:
    """Resolve settings: defaults < profile < base (a run's run.yaml) < YAML file < overrides.

    overrides maps dotted paths (``split.method``) to values.
    """
    data: dict = {}
    if base:
        data = _deep_merge(data, base)
    if yaml_file:
        p = Path(yaml_file)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p} must hold a mapping of settings")
        data = _deep_merge(data, loaded)
    over: dict = {}
    for path, v in (overrides or {}).items():
        _set_path(over, path, v)
    data = _deep_merge(data, over)
    prof = profile or data.get("profile") or "default"
    if prof not in PROFILES:
        raise ConfigError(f"unknown profile {prof!r}; choose one of {', '.join(PROFILES)}")
    # the profile only fills what the user did not set
    prof_over: dict = {}
    for path, v in PROFILES[prof].items():
        _set_path(prof_over, path, v)
    data = _deep_merge(prof_over, data)
    data["profile"] = prof
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        where = yaml_file or "the command line / run.yaml"
        raise ConfigError(_format_errors(e, str(where))) from None


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def load_run_config(run_dir: str | Path) -> dict | None:
    p = Path(run_dir) / "run.yaml"
    if not p.is_file():
        return None
    return yaml.safe_load(p.read_text()) or {}


# ----------------------------------------------------------------------------- CLI flags

def iter_settings(model: type[BaseModel] = RunConfig, prefix: str = ""):
    """Yield (dotted path, flag, field info) for every leaf setting."""
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_settings(ann, f"{prefix}{name}.")
            continue
        extra = info.json_schema_extra or {}
        flag = extra.get("flag") or "--" + (prefix + name).replace(".", "-").replace("_", "-")
        yield prefix + name, flag, info


def flag_aliases(info) -> list[str]:
    return list((info.json_schema_extra or {}).get("aliases", []))


def _base_type(ann):
    origin = get_origin(ann)
    if origin is None:
        return ann
    if origin in (list, dict, Literal):
        return origin
    args = [a for a in get_args(ann) if a is not type(None)]
    return _base_type(args[0]) if args else ann


def parse_cli_value(path: str, raw: str) -> Any:
    """Turn a command-line string into the shape the setting expects (lists, maps, None)."""
    info = dict((p, i) for p, _, i in iter_settings())[path]
    kind = _base_type(info.annotation)
    if raw is None:
        return None
    if isinstance(raw, str) and raw.lower() in ("none", "null") and type(None) in get_args(info.annotation):
        return None
    if kind is list:
        return [x.strip() for x in str(raw).split(",") if x.strip()]
    if kind is dict:
        out = {}
        for pair in str(raw).split(","):
            if not pair.strip():
                continue
            if "=" not in pair:
                raise ConfigError(f"{path}: expected key=value pairs, got {pair!r}")
            k, v = pair.split("=", 1)
            out[k.strip()] = v.strip()
        return out
    return raw
