"""Settings: each declared once, per-model defaults from one table, old names still load."""
import pytest
import yaml

from pakd.config import (ARCH, ORIGINAL, PROFILES, RENAMED, STUDENT, TEACHERS, RunConfig,
                         build_config, setting, settings)
from pakd.config.defaults import DISTILL_FIT, FIT
from pakd.errors import ConfigError


def test_member_and_student_defaults_come_from_the_tables():
    cfg = RunConfig()
    for kind in TEACHERS:
        section = getattr(cfg, kind)
        for key, value in {**ARCH[kind], **FIT[kind]}.items():
            assert getattr(section, key) == value, (kind, key)
    for key, value in ARCH[STUDENT].items():
        if key != "item_rows":          # set from student.item_coverage and the data
            assert getattr(cfg.student, key) == value, key
    for key, value in DISTILL_FIT.items():
        assert getattr(cfg.distill, key) == value, key


def test_every_setting_has_one_flag_and_no_flag_is_shared():
    flags = [s.flag for s in settings()]
    assert len(flags) == len(set(flags))
    aliases = {a for s in settings() for a in s.aliases}
    assert not aliases & set(flags)
    assert setting("split.ratios").flag == "--split-ratios"
    assert setting("distill.pruning_ratios").flag == "--pruning-ratios"


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
    assert cfg.distill.pruning_ratio == 0.6 and cfg.fisher.target_layers == ["cin"]
    assert cfg.distill.distill_tasks == ["rating"] and cfg.ensemble.weights == [0.5, 0.3, 0.2]
    assert set(ORIGINAL) >= {"teacher_type", "pruning_ratio", "target_layers", "focus_tasks",
                             "distill_tasks"}


def test_renamed_keys_of_older_run_yaml_still_load():
    old = {"distill": {"ratios": [0.3], "rating_weight": 0.7, "student_hidden": [5],
                       "bench_seconds": 1.5},
           "svd": {"rating_weight": 2.0}}
    cfg = build_config(base=old)
    assert cfg.distill.pruning_ratios == [0.3] and cfg.distill.kd_rating_weight == 0.7
    assert cfg.student.hidden == [5] and cfg.bench.seconds == 1.5
    assert cfg.svd.rating_loss_weight == 2.0
    for new in RENAMED.values():
        setting(new)                      # every new name exists


def test_unknown_keys_are_rejected_with_the_valid_ones_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"distill": {"pruning_ratoi": [0.5]}}))
    with pytest.raises(ConfigError, match="did you mean distill.pruning_ratio"):
        build_config(yaml_file=p)


def test_profile_fills_only_what_the_user_did_not_set():
    cfg = build_config(profile="quick", overrides={"svd.factors": 12})
    assert cfg.svd.factors == 12 and cfg.svd.epochs == PROFILES["quick"]["svd.epochs"]
    assert cfg.student.hidden == PROFILES["quick"]["student.hidden"]
    for path in PROFILES["quick"]:
        setting(path)                     # every profile key is a real setting
