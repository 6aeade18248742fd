"""benchmarks/compare_runs.py --every-file: a kept folder's flat files against a run's tree."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from compare_runs import every_file  # noqa: E402


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_a_flat_kept_file_is_found_by_name_and_compared(tmp_path):
    kept, run = tmp_path / "kept", tmp_path / "run"
    _write(kept / "pakd_experiment.json", {"ndcg@10": 0.25, "seconds": 3.0})
    _write(kept / "teachers.json", {"rmse": 0.81})
    _write(kept / "timings.json", {"total": 1.0})
    _write(run / "analysis_results" / "pakd_experiment.json", {"ndcg@10": 0.26, "seconds": 9.0})
    _write(run / "teachers.json", {"rmse": 0.81})
    assert every_file(kept, run) == ["pakd_experiment.json: /ndcg@10: 0.25 vs 0.26",
                                     "teachers.json: equal"]


def test_a_name_two_files_share_is_missing_not_guessed(tmp_path):
    kept, run = tmp_path / "kept", tmp_path / "run"
    _write(kept / "pakd_experiment.json", {"a": 1})
    _write(run / "x" / "pakd_experiment.json", {"a": 1})
    _write(run / "y" / "pakd_experiment.json", {"a": 1})
    assert every_file(kept, run) == [f"pakd_experiment.json: missing in {run}"]
