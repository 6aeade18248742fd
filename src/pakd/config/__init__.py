"""Settings: sections (`sections`), per-model defaults as data (`defaults`), profiles
(`profiles`) and their resolution from files and flags (`resolve`)."""
from .defaults import (ARCH, CLOSED_FORM, DEFAULT_MEMBERS, GRAPH_SEQUENCE, LIGHTWEIGHT,
                       MEMBER_KINDS, STUDENT, STUDENT_ARCH, TEACHERS, TRAINED)
from .profiles import PROFILES
from .resolve import (ORIGINAL, RENAMED, Setting, build_config, dump_yaml, load_run_config,
                      parse_cli_value, setting, settings, spellings)
from .sections import (ALSConfig, BenchConfig, DataConfig, DistillConfig, EASEConfig,
                       EnsembleConfig, EvalConfig, FisherConfig, FitSettings, LightGCNConfig,
                       LightweightConfig, RunConfig, SASRecConfig, SplitConfig, StudentConfig,
                       TrainConfig, TuneConfig, arch_of)

__all__ = ["ARCH", "CLOSED_FORM", "DEFAULT_MEMBERS", "GRAPH_SEQUENCE", "TRAINED", "LIGHTWEIGHT",
           "MEMBER_KINDS", "STUDENT",
           "STUDENT_ARCH", "TEACHERS", "PROFILES", "ORIGINAL", "RENAMED", "Setting",
           "build_config", "dump_yaml", "load_run_config", "parse_cli_value", "setting",
           "settings", "spellings", "ALSConfig", "BenchConfig", "DataConfig", "DistillConfig",
           "EASEConfig", "EnsembleConfig", "EvalConfig", "FisherConfig", "FitSettings",
           "LightGCNConfig", "LightweightConfig", "RunConfig", "SASRecConfig", "SplitConfig",
           "StudentConfig", "TrainConfig", "TuneConfig",
           "arch_of"]
