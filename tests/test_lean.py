"""Ship what runs: the GPU runtime a CPU image leaves out, and the test suites every image does.

Pure logic on recorded kernel environments (tests/environments/cuda.json) and on small wheels
made here; the XGBoost and house-price builds in test_notebooks.py show it in real images.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nb2container import cuda, lean, pipeline, wheelhouse
from nb2container.freeze import Closure
from nb2container.options import Options
from nb2container.progress import SilentProgress

ENVIRONMENTS = json.loads((Path(__file__).parent / "environments" / "cuda.json").read_text())
NVIDIA = ("nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-nccl-cu12",
          "nvidia-nvjitlink-cu12")
# What torch 2.3.1's CUDA build requires, as pipdeptree reads it (cudnn requires cublas).
TORCH_REQUIRES = {"torch": (*NVIDIA, "filelock", "triton"), "nvidia-cudnn-cu12": ("nvidia-cublas-cu12",),
                  "triton": ("filelock",)}
TORCH_CLOSURE = {**ENVIRONMENTS["torch_cuda12_wheels"]["closure"], "triton": "2.3.1"}
SIZES = {"nvidia-cudnn-cu12": 700_000_000, "nvidia-cublas-cu12": 400_000_000, "triton": 200_000_000}


XGBOOST = {"xgboost": "3.2.0", "nvidia-nccl-cu12": "2.32.3", "numpy": "2.4.6"}


def test_xgboost_gets_its_cpu_build_and_no_nccl() -> None:
    asked = []
    plan = lean.plan_gpu(XGBOOST, {"xgboost": ("nvidia-nccl-cu12", "numpy")}, set(), {"nvidia-nccl-cu12": 490_000_000},
                         lambda name, version: asked.append((name, version)) or True)
    assert asked == [("xgboost-cpu", "3.2.0")] and plan.swapped == ("xgboost",)
    assert plan.packages == {"xgboost-cpu": "3.2.0", "numpy": "2.4.6"}
    build, item = plan.left_out
    assert build.what == "xgboost 3.2.0" and build.why.endswith("the image has its CPU build, xgboost-cpu 3.2.0")
    assert item.what == "nvidia-nccl-cu12 2.32.3" and item.bytes == 490_000_000 and not item.suite
    assert "the image gets xgboost's CPU build" in item.why
    assert not plan.warning


def test_an_xgboost_without_a_cpu_build_still_serves_without_nccl() -> None:
    plan = lean.plan_gpu(XGBOOST, {"xgboost": ("nvidia-nccl-cu12", "numpy")}, set(), {}, lambda n, v: False)
    assert plan.packages == {"xgboost": "3.2.0", "numpy": "2.4.6"} and not plan.swapped
    assert "xgboost loads NCCL only for distributed training" in plan.left_out[0].why


def test_torch_cuda_build_becomes_the_cpu_build_of_the_same_version() -> None:
    asked = []
    plan = lean.plan_gpu(TORCH_CLOSURE, TORCH_REQUIRES, {"torch"}, SIZES,
                         lambda name, version: asked.append((name, version)) or True)
    assert asked == [("torch", "2.3.1+cpu")]
    assert plan.swapped == ("torch",)
    assert plan.packages == {"torch": "2.3.1+cpu", "numpy": "1.26.4", "filelock": "3.14.0"}
    assert [item.what.split()[0] for item in plan.left_out] == ["torch", *sorted((*NVIDIA, "triton"))]  # cublas too
    assert plan.left_out[0].why == "built with CUDA: the image has its CPU build, torch 2.3.1+cpu"
    assert not plan.warning


def test_cuda_build_without_a_cpu_build_stays_and_says_how_much_and_what_to_do() -> None:
    plan = lean.plan_gpu(TORCH_CLOSURE, TORCH_REQUIRES, {"torch"}, SIZES, lambda name, version: False)
    assert plan.packages == TORCH_CLOSURE and not plan.left_out
    assert "1,300 MB of the image is GPU runtime" in plan.warning
    assert "pip install torch==2.3.1 --index-url https://download.pytorch.org/whl/cpu" in plan.warning
    assert "--gpus" in plan.warning


def test_a_package_not_known_to_run_without_its_gpu_wheels_keeps_them() -> None:
    closure = {"gpu-kernels": "1.0", "nvidia-cuda-runtime-cu12": "12.1.105", "xgboost": "3.2.0"}
    plan = lean.plan_gpu(closure, {"gpu-kernels": ("nvidia-cuda-runtime-cu12",),
                                   "xgboost": ("nvidia-cuda-runtime-cu12",)}, set(), {}, lambda n, v: False)
    assert plan.packages == closure and not plan.left_out
    assert "required by gpu-kernels, xgboost" in plan.warning


def _cpu_only(gpu_used: list[str], gpus: str | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    monkeypatch.setattr(wheelhouse, "obtainable", lambda *args: True)  # no index in this tier
    capture: Any = SimpleNamespace(interpreter=SimpleNamespace(
        gpu_used=gpu_used, python_version="3.11.7", executable=sys.executable))
    facts = cuda.CudaFacts.from_json(ENVIRONMENTS["torch_cuda12_wheels"]["facts"])
    closure = Closure(TORCH_CLOSURE, ("torch",), (), {}, TORCH_REQUIRES)
    return pipeline._cpu_only(capture, closure, facts, Options(notebook=None, gpus=gpus), SilentProgress())


def test_cpu_image_gets_no_cuda_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    packages, left_out, facts = _cpu_only([], None, monkeypatch)
    assert packages["torch"] == "2.3.1+cpu" and len(left_out) == 7
    assert cuda.decide(facts, packages) is None  # neither NVIDIA's wheels nor the system's CUDA


@pytest.mark.parametrize("gpu_used, gpus", [(["torch"], None), ([], "all")], ids=["kernel-used-cuda", "--gpus"])
def test_gpu_runtime_is_kept_when_the_kernel_used_a_gpu_or_gpus_are_asked_for(
        gpu_used: list[str], gpus: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    packages, left_out, facts = _cpu_only(gpu_used, gpus, monkeypatch)
    assert packages == TORCH_CLOSURE and left_out == ()
    needs = cuda.decide(facts, packages)
    assert needs is not None and needs.version == "12.1" and needs.source == "pip"


def _wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_test_suites_are_left_out_unless_the_package_imports_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB2C_CACHE_DIR", str(tmp_path / "cache"))
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {
        "pkg/__init__.py": "from pkg import core\n",
        "pkg/core.py": "def f():\n    return 1\n",
        "pkg/tests/__init__.py": "",
        "pkg/tests/test_core.py": "x" * 1000,
        "pkg/io/tests/data/big.csv": "y" * 5000,
        "pkg/io/tests/data/nested/tests/deeper.py": "z" * 10,
        "pkg/helpers/reader.py": "from .tests import fixtures\n",  # a package that imports its tests
        "pkg/helpers/tests/fixtures.py": "ROWS = 1\n",
        "pkg/util.py": "import importlib\nMOD = 'pkg.extra.test'\n",  # named by its dotted path
        "pkg/extra/test/__init__.py": "",
        "pkg/api/v2.py": "from pkg.api import (\n    io,\n    test,\n)\n",  # tf.test: from its parent
        "pkg/api/test/__init__.py": "",
        "pkg/deep/a/b.py": "from ... import dtests\n",  # relatively from two levels up: not this one
        "pkg/deep/a/tests/c.py": "",
        "pkg/deep/x/y.py": "from .. import x\nfrom ..tests import cases\n",
        "pkg/deep/tests/cases.py": "",
        "pkg-1.0.dist-info/METADATA": "Name: pkg\n",
        "tests/test_top.py": "",  # a top-level `tests` package is some other project's, not this one's suite
    })
    found = dict(lean.test_suites(wheel, "0" * 64))
    assert found == {"pkg/tests": 1000, "pkg/io/tests": 5010, "pkg/deep/a/tests": 0}
    (tmp_path / "cache").joinpath("wheels", f"tests-v2-{'0' * 24}.json").write_text('[["cached/tests", 1]]')
    assert lean.test_suites(wheel, "0" * 64) == [("cached/tests", 1)]  # read once per wheel


def test_report_lines_for_people() -> None:
    from nb2container.model import LeftOut
    items = (LeftOut("nvidia-nccl-cu12 2.32.3", "GPU-only", 490_000_000),
             LeftOut("pandas/tests", "test suite of pandas", 46_000_000),
             LeftOut("numpy/_core/tests", "test suite of numpy", 4_000_000))
    assert lean.describe(items) == "GPU runtime nvidia-nccl-cu12 2.32.3; 2 test suite(s) (50 MB): 540 MB in all"
    assert lean.describe(()) == "nothing"
    assert lean.describe(items[1:]) == "2 test suite(s) (50 MB)"  # no "in all" for one kind
