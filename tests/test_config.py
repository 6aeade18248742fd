"""Settings: each declared once, per-model defaults from one table, old names still load."""
import pandas as pd
import pytest
import yaml

from pakd.config import (ARCH, LIGHTWEIGHT, ORIGINAL, PROFILES, RENAMED, STUDENT, STUDENT_ARCH,
                         TEACHERS, RunConfig, build_config, dump_yaml, setting, settings)
from pakd.config.defaults import DISTILL_FIT, FIT
from pakd.errors import ConfigError


def test_member_and_student_defaults_come_from_the_tables():
    cfg = RunConfig()
    for kind in TEACHERS:
        section = getattr(cfg, kind)
        for key, value in {**ARCH[kind], **FIT[kind]}.items():
            assert getattr(section, key) == value, (kind, key)
    for key, value in ARCH[LIGHTWEIGHT].items():
        if key != "item_rows":          # set from lightweight.item_coverage and the data
            assert getattr(cfg.lightweight, key) == value, key
    for key, value in STUDENT_ARCH.items():
        assert getattr(cfg.student, key) == value, key
    for key in ("dim", "rank_dims", "rate_dims", "user_side", "alpha"):   # what build fills
        assert ARCH[STUDENT][key] == STUDENT_ARCH[key], key
    assert ARCH[STUDENT]["hidden"] == STUDENT_ARCH["mlp"]
    for key, value in DISTILL_FIT.items():
        assert getattr(cfg.distill, key) == value, key


def test_every_setting_has_one_flag_and_no_flag_is_shared():
    flags = [s.flag for s in settings()]
    assert len(flags) == len(set(flags))
    aliases = {a for s in settings() for a in s.aliases}
    assert not aliases & set(flags)
    assert setting("split.ratios").flag == "--split-ratios"
    assert setting("distill.budgets").flag == "--budgets"
    assert "--pruning-ratios" in setting("distill.budgets").aliases


def test_no_setting_describes_its_own_default():
    """The help appends the default; a description that names one would show two."""
    for s in settings():
        assert "(default" not in s.info.description.lower(), s.path


def test_original_spellings_in_yaml(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump({"teacher_type": "svd", "pruning_ratio": 0.6,
                                 "target_layers": ["cin"], "distill_tasks": ["rating"],
                                 "student": "lightweight_model", "weights": [0.5, 0.3, 0.2],
                                 "algorithms": ["svd", "xdeepfm", "autoint"]}))
    cfg = build_config(yaml_file=p)
    assert cfg.fisher.teacher == cfg.distill.teacher == "svd"
    assert cfg.distill.budgets == ["0.6"] and cfg.fisher.target_layers == ["cin"]
    assert cfg.distill.distill_tasks == ["rating"] and cfg.ensemble.weights == [0.5, 0.3, 0.2]
    assert set(ORIGINAL) >= {"teacher_type", "pruning_ratio", "target_layers", "focus_tasks",
                             "distill_tasks"}


def test_renamed_keys_of_older_run_yaml_still_load():
    old = {"distill": {"ratios": [0.3], "rating_weight": 0.7, "student_hidden": [5],
                       "bench_seconds": 1.5, "ablation": True},
           "svd": {"rating_weight": 2.0}, "student": {"factors": 7}}
    cfg = build_config(base=old)
    assert cfg.distill.budgets == ["0.3"] and cfg.distill.kd_rating_weight == 0.7
    assert cfg.distill.ablation == "0.3"           # was: at the largest pruning ratio
    assert cfg.lightweight.hidden == [5] and cfg.bench.seconds == 1.5
    assert cfg.lightweight.factors == 7            # the lightweight student's old section
    sizes = build_config(base={"distill": {"size_budgets": [10, 3], "pruning_ratios": [0.4],
                                           "pruning_ratio": None}})
    assert sizes.distill.budgets == ["10%", "3%"]
    assert cfg.svd.rating_loss_weight == 2.0
    for new in RENAMED.values():
        setting(new)                      # every new name exists


def test_unknown_keys_are_rejected_with_the_valid_ones_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"distill": {"budgts": ["3%"]}}))
    with pytest.raises(ConfigError, match="did you mean distill.budgets"):
        build_config(yaml_file=p)


def test_profile_fills_only_what_the_user_did_not_set():
    cfg = build_config(profile="quick", overrides={"svd.factors": 12})
    assert cfg.svd.factors == 12 and cfg.svd.epochs == PROFILES["quick"]["svd.epochs"]
    assert cfg.lightweight.hidden == PROFILES["quick"]["lightweight.hidden"]
    assert cfg.student.dim == PROFILES["quick"]["student.dim"]
    for path in PROFILES["quick"]:
        setting(path)                     # every profile key is a real setting


# ----------------------------------------------------------------------------- data size

def test_settings_keep_the_reference_steps_on_a_larger_split():
    from pakd.config.profiles import REFERENCE_TRAIN_RATINGS
    from pakd.config.profiles import for_data as fitted

    def for_data(*args):
        return fitted(*args, ease_max_items=30_000)

    assert for_data("default", REFERENCE_TRAIN_RATINGS, 9000) == {}
    assert for_data("default", 500, 30) == {}                # smaller: nothing changes
    # ten times the reference: a tenth of each default's epochs, rounded, at least one
    got = for_data("default", 10 * REFERENCE_TRAIN_RATINGS, 3706)
    assert got == {"svd.epochs": 4, "xdeepfm.epochs": 1, "autoint.epochs": 2,
                   "distill.epochs": 2, "distill.prune_epochs": 1}
    assert for_data("default", 100 * REFERENCE_TRAIN_RATINGS, 3706)["svd.epochs"] == 1
    # 2.5 times: 40/2.5 = 16, 12/2.5 = 4.8 -> 5, 20/2.5 = 8, 16/2.5 = 6.4 -> 6, 8/2.5 -> 3
    got = for_data("default", int(2.5 * REFERENCE_TRAIN_RATINGS), 3706)
    assert got == {"svd.epochs": 16, "xdeepfm.epochs": 5, "autoint.epochs": 8,
                   "distill.epochs": 6, "distill.prune_epochs": 3}
    # the quick profile's two epochs become one; its one-epoch members are at the floor
    assert for_data("quick", 10 * REFERENCE_TRAIN_RATINGS, 3706) == {
        "svd.epochs": 1, "distill.epochs": 1, "distill.prune_epochs": 1}


def test_full_catalogue_softmax_and_ease_give_way_on_large_catalogues():
    from pakd.config.profiles import FULL_SOFTMAX_CELLS, for_data
    n = 10_000_000
    below = for_data("default", n, int(FULL_SOFTMAX_CELLS // n), ease_max_items=30_000)
    assert "svd.ranking_loss" not in below and "distill.label_ranking" not in below
    above = for_data("default", n, int(FULL_SOFTMAX_CELLS // n) + 1, ease_max_items=30_000)
    assert above["svd.ranking_loss"] == "softmax"
    assert above["svd.negative_sampling"] == "popularity"
    assert above["lightgcn.ranking_loss"] == "softmax"      # selectable, same rule
    assert above["distill.label_ranking"] == "softmax"
    assert "train.models" not in above
    big = for_data("default", n, 40_000, ease_max_items=30_000)
    assert big["train.models"] == big["ensemble.algorithms"] == ["svd", "autoint"]
    assert for_data("default", n, 40_000, ease_max_items=50_000)["train.models"] == [
        "svd", "autoint", "ease"]                     # only the two knns are over
    assert for_data("default", n, 40_000, ease_max_items=50_000, knn_max_items=50_000)[
        "train.models"] == ["svd", "autoint", "ease", "knn"]
    assert "train.models" not in for_data("default", n, 40_000, ease_max_items=50_000,
                                          knn_max_items=50_000, knn_interp_max_items=50_000)
    # the full profile's graph and sequence members stay when EASE and knn leave
    full = for_data("full", n, 40_000, ease_max_items=30_000)
    assert full["train.models"] == ["svd", "autoint", "lightgcn", "sasrec"]


def test_the_full_profile_trains_and_mixes_the_graph_and_sequence_members():
    full = build_config(profile="full")
    assert full.train.models == full.ensemble.algorithms == [
        "svd", "autoint", "ease", "knn", "knn_interp", "lightgcn", "sasrec"]
    assert build_config().train.models == ["svd", "autoint", "ease", "knn", "knn_interp"]


def test_fitted_settings_sit_under_the_users():
    from pakd.config.profiles import REFERENCE_TRAIN_RATINGS
    size = (10 * REFERENCE_TRAIN_RATINGS, 40_000)
    cfg = build_config(size=size)
    assert (cfg.svd.epochs, cfg.xdeepfm.epochs, cfg.distill.epochs) == (4, 1, 2)
    assert cfg.train.models == ["svd", "autoint"]
    mine = build_config(size=size, overrides={"xdeepfm.epochs": 7, "train.models": ["svd", "ease"],
                                              "ease.max_items": 50_000, "knn.max_items": 50_000})
    assert mine.xdeepfm.epochs == 7 and mine.svd.epochs == 4
    assert mine.train.models == ["svd", "ease"]
    assert mine.ensemble.algorithms == ["svd", "autoint", "ease", "knn"]  # limits raised
    # a run's saved settings hold every value: fitting changes none of them
    saved = yaml.safe_load(dump_yaml(build_config()))
    assert build_config(base=saved, size=size).model_dump() == build_config().model_dump()


def test_a_run_fits_its_settings_to_its_split_once(tmp_path, tiny_files, monkeypatch):
    """With the reference made tiny, the 20-user table is 'large': the run's run.yaml gets
    the fitted epochs, a setting given on the command line stays, and a later command on
    the run keeps what run.yaml holds."""
    from pakd.cli import main
    from pakd.config import profiles
    monkeypatch.setattr(profiles, "REFERENCE_TRAIN_RATINGS", 20)
    run = tmp_path / "r"
    data = ["--dataset", str(tiny_files / "ratings.csv"), "--columns",
            "user=userId,item=movieId,rating=rating,timestamp=timestamp"]
    mine = tmp_path / "mine.yaml"
    mine.write_text("autoint:\n  epochs: 9\n")
    assert main(["data", "split", "--run", str(run), *data, "--config", str(mine), "-q"]) == 0
    saved = yaml.safe_load((run / "run.yaml").read_text())
    train = len(pd.read_csv(run / "split.csv").query("part == 'train'"))
    k = train / 20
    assert saved["svd"]["epochs"] == max(1, round(40 / k)) < 40
    assert saved["xdeepfm"]["epochs"] == max(1, round(12 / k)) < 12
    assert saved["autoint"]["epochs"] == 9
    monkeypatch.setattr(profiles, "REFERENCE_TRAIN_RATINGS", 10 ** 9)
    assert main(["config", "show", "--run", str(run)]) == 0
    assert main(["data", "split", "--run", str(run), *data, "-q"]) == 0
    again = yaml.safe_load((run / "run.yaml").read_text())
    assert again["svd"]["epochs"] == saved["svd"]["epochs"]
