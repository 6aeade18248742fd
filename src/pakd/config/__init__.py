"""Settings: sections (`sections`), per-model defaults as data (`defaults`), profiles
(`profiles`) and their resolution from files and flags (`resolve`)."""
from .defaults import (ARCH, CLOSED_FORM, DEFAULT_MEMBERS, LIGHTWEIGHT, MEMBER_KINDS, STUDENT,
                       STUDENT_ARCH, TEACHERS)
from .profiles import PROFILES
from .resolve import (ORIGINAL, RENAMED, Setting, build_config, dump_yaml, load_run_config,
                      parse_cli_value, setting, settings, spellings)
from .sections import (ALSConfig, BenchConfig, DataConfig, DistillConfig, EASEConfig,
                       EnsembleConfig, EvalConfig, FisherConfig, FitSettings, LightweightConfig,
                       RunConfig, SplitConfig, StudentConfig, TrainConfig, TuneConfig,
                       arch_of)

__all__ = ["ARCH", "CLOSED_FORM", "DEFAULT_MEMBERS", "LIGHTWEIGHT", "MEMBER_KINDS", "STUDENT",
           "STUDENT_ARCH", "TEACHERS", "PROFILES", "ORIGINAL", "RENAMED", "Setting",
           "build_config", "dump_yaml", "load_run_config", "parse_cli_value", "setting",
           "settings", "spellings", "ALSConfig", "BenchConfig", "DataConfig", "DistillConfig",
           "EASEConfig", "EnsembleConfig", "EvalConfig", "FisherConfig", "FitSettings",
           "LightweightConfig", "RunConfig", "SplitConfig", "StudentConfig", "TrainConfig", "TuneConfig",
           "arch_of"]
