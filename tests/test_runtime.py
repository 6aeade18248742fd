"""The environment record kept in RUN/timings.json: the CPU, the BLAS/OpenMP/oneDNN
builds, every package and how it differs from the lock, deterministic algorithms."""
import json

import numpy as np
import torch

from pakd import lockfile, runtime


def test_environment_record_holds_the_new_fields():
    env = runtime.environment()
    json.dumps(env)                                   # kept as JSON
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages"]["pydantic"] and "pakd" in env["packages"]
    for name in ("onnxruntime", "scikit-surprise", "implicit", "threadpoolctl"):
        assert name in env                            # None when not installed
    assert env["cpu"]["cores"] >= 1 and env["cpu"]["model"]
    assert isinstance(env["cpu"]["flags"], list)
    b = env["torch_build"]
    assert b["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert b["blas_info"] and b["use_openmp"] in ("ON", "OFF")
    assert isinstance(env["thread_pools"], list) and env["thread_pools"]
    assert {p["user_api"] for p in env["thread_pools"]} >= {"blas"}
    keys = [json.dumps(p, sort_keys=True, default=str) for p in env["thread_pools"]]
    assert keys == sorted(keys)                       # the load order does not show
    assert env["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()
    lock = env["lock"]                                # pakd runs from this checkout
    assert lock["file"] == lockfile.LOCK and len(lock["sha256"]) == 64
    assert isinstance(lock["differs"], dict)


def test_deterministic_algorithms_are_recorded_when_on():
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        env = runtime.environment()
        assert env["deterministic_algorithms"] is True and env["deterministic_warn_only"] is True
    finally:
        torch.use_deterministic_algorithms(was)


def test_cpu_info_reads_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: sse2 avx2 fma\n\n"
                 "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: sse2\n")
    info = runtime.cpu_info(str(f))
    assert info["model"] in ("Test CPU 9000", runtime.cpu_info()["model"])
    assert info["flags"] == ["avx2", "fma", "sse2"]
    assert runtime.cpu_info(str(tmp_path / "absent"))["flags"] == []


def test_lock_record_names_every_difference(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\ndependencies = ["numpy"]\n')
    (tmp_path / lockfile.LOCK).write_text(
        "numpy==2.4.6 --hash=sha256:aa\npandas==3.1.1 --hash=sha256:bb\n"
        "scipy==1.17.1 --hash=sha256:cc\n")
    lockfile.stamp(tmp_path)
    rec = runtime.lock_record({"numpy": "2.4.6", "pandas": "3.0.0", "extra-pkg": "1.0",
                               "pakd": "0.1.0"}, root=tmp_path)
    assert rec["up_to_date"] is True
    assert rec["differs"] == {"pandas": {"locked": "3.1.1", "installed": "3.0.0"},
                              "scipy": {"locked": "1.17.1", "installed": None},
                              "extra-pkg": {"locked": None, "installed": "1.0"}}
    assert runtime.lock_record({}, root=tmp_path / "none") is None
