"""Settings: sections (`sections`), per-model defaults as data (`defaults`), profiles
(`profiles`) and their resolution from files and flags (`resolve`)."""
from .defaults import ARCH, CLOSED_FORM, DEFAULT_MEMBERS, MEMBER_KINDS, STUDENT, TEACHERS
from .profiles import PROFILES
from .resolve import (ORIGINAL, RENAMED, Setting, build_config, dump_yaml, load_run_config,
                      parse_cli_value, setting, settings, spellings)
from .sections import (BenchConfig, DataConfig, DistillConfig, EnsembleConfig, EvalConfig,
                       ALSConfig, EASEConfig, FisherConfig, FitSettings, RunConfig, SplitConfig, StudentConfig,
                       TrainConfig, arch_of, sweep_ratios)

__all__ = ["ARCH", "CLOSED_FORM", "DEFAULT_MEMBERS", "MEMBER_KINDS", "STUDENT", "TEACHERS", "PROFILES", "ORIGINAL", "RENAMED", "Setting",
           "build_config", "dump_yaml", "load_run_config", "parse_cli_value", "setting",
           "settings", "spellings", "BenchConfig", "DataConfig", "DistillConfig",
           "ALSConfig", "EASEConfig", "EnsembleConfig", "EvalConfig", "FisherConfig", "FitSettings", "RunConfig",
           "SplitConfig", "StudentConfig", "TrainConfig", "arch_of",
           "sweep_ratios"]
