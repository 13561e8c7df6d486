"""CUDA: detection in the kernel's environment, the choice of where the image gets CUDA, and
the Dockerfiles that choice renders.

The kernel environments in tests/environments/cuda.json are recorded probe answers (this
machine has no GPU): torch on CUDA 12 and CUDA 13 wheels, torch with its own bundled
runtime, cupy / tensorflow / jax on a system CUDA, CPU-only torch, and a CUDA kernel whose
function needs no CUDA. The probe itself runs for real on real NVIDIA wheels.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from nb2container import cuda, render
from nb2container.model import Capture, FrozenEnvironment, Pin, default_base
from nb2container.options import Options

BASE = default_base(platform.python_version())
ENVIRONMENTS = json.loads((Path(__file__).parent / "environments" / "cuda.json").read_text())


def recorded(name: str) -> cuda.Cuda | None:
    environment = ENVIRONMENTS[name]
    return cuda.decide(cuda.CudaFacts.from_json(environment["facts"]), environment["closure"])


@pytest.mark.parametrize(("name", "version", "source", "base"), [
    ("torch_cuda12_wheels", "12.1", "pip", None),
    ("torch_cuda13_unsuffixed_wheels", "13.0", "pip", None),
    ("torch_bundled_cuda11", "11.7", "pip", None),
    ("cupy_system_cuda", "12.2", "system", "nvidia/cuda:12.2.2-runtime-ubuntu22.04"),
    ("tensorflow_system_cuda_cudnn", "12.2", "system", "nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04"),
    ("jax_cuda12_local", "12.6", "system", "nvidia/cuda:12.6.2-cudnn-runtime-ubuntu22.04"),
])
def test_cuda_is_found_with_its_version_and_source(name: str, version: str, source: str, base: str | None) -> None:
    found = recorded(name)
    assert found is not None
    assert (found.version, found.source, found.base) == (version, source, base)


def test_cpu_builds_and_unused_cuda_get_no_cuda() -> None:
    assert recorded("torch_cpu") is None
    assert recorded("cuda_kernel_cpu_function") is None  # the kernel has CUDA; the function does not use it


def test_what_provides_cuda_and_the_driver_are_named() -> None:
    wheels = recorded("torch_cuda12_wheels")
    assert wheels is not None and wheels.shipped == "nvidia-cuda-runtime-cu12 12.1.105"
    assert wheels.frameworks == ("torch 2.3.1 (built for CUDA 12.1)",)
    assert wheels.driver == "550.54.15 (runs CUDA up to 12.4) on NVIDIA H100 80GB HBM3"
    assert "CUDA 12.1 from pip wheels (nvidia-cuda-runtime-cu12 12.1.105)" in cuda.describe(wheels)
    assert recorded("torch_bundled_cuda11").shipped == "torch wheel"  # type: ignore[union-attr]
    assert cuda.describe(None) == "none (CPU only)"


def test_probe_reads_real_nvidia_wheels_and_framework_files(tmp_path: Path) -> None:
    """A real interpreter with NVIDIA's CUDA 12 and unsuffixed CUDA 13 runtime wheels installed,
    and a torch laid out as CUDA builds are (torch/version.py), read without importing anything."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "kernel"], check=True)
    python = tmp_path / "kernel/bin/python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--target", site, "nvidia-cuda-runtime-cu12==12.1.105", "nvidia-cuda-runtime"], check=True)
    (site / "torch").mkdir()
    (site / "torch/version.py").write_text("__version__ = '2.3.1'\ndebug = False\n"
                                           "cuda: Optional[str] = '12.1'\ngit_version = 'abc'\n")
    (site / "torch-2.3.1.dist-info").mkdir()
    (site / "torch-2.3.1.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.3.1\n")
    (site / "torch-2.3.1.dist-info/RECORD").write_text("torch/version.py,,\n")

    facts = cuda.probe(str(python))
    assert facts.frameworks == {"torch": "12.1"} and facts.bundled == ()
    assert facts.distributions["nvidia-cuda-runtime-cu12"] == "12.1.105"
    assert facts.distributions["nvidia-cuda-runtime"].startswith("13.")
    found = cuda.decide(facts, {"torch": "2.3.1", "nvidia-cuda-runtime-cu12": "12.1.105"})
    assert found is not None and (found.version, found.source) == ("12.1", "pip")
    assert cuda.decide(facts, {"numpy": "2.0.0"}) is None


Captured = tuple[Capture, FrozenEnvironment, list[Pin]]


def rendered_with(captured: Captured, name: str | None, folder: Path) -> Path:
    capture, frozen, server_pins = captured
    folder.mkdir(parents=True)
    render.render(capture, replace(frozen, cuda=recorded(name) if name else None), server_pins,
                  folder, "nb2c-test/rendered:latest", Options(notebook=None, port=8080), [])
    return folder


def test_this_cpu_machine_renders_no_cuda(stdlib_capture: Captured, tmp_path: Path) -> None:
    assert stdlib_capture[1].cuda is None  # the real probe on this machine (no GPU, no CUDA)
    folder = rendered_with(stdlib_capture, None, tmp_path / "cpu")
    dockerfile, readme = (folder / "Dockerfile").read_text(), (folder / "README.md").read_text()
    assert "NVIDIA" not in dockerfile and "cuda" not in dockerfile.lower()
    assert "--gpus" not in readme and "CUDA: none" in readme


def test_pip_cuda_renders_the_slim_base_and_the_toolkit_variables(
    stdlib_capture: Captured, tmp_path: Path
) -> None:
    folder = rendered_with(stdlib_capture, "torch_cuda12_wheels", tmp_path / "pip")
    dockerfile, readme = (folder / "Dockerfile").read_text(), (folder / "README.md").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith("FROM")] == [
        f"FROM {BASE} AS packages", f"FROM {BASE}"]
    assert ('ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility '
            'NVIDIA_REQUIRE_CUDA="cuda>=12.1"') in dockerfile
    assert "nvidia/cuda" not in dockerfile and "COPY --from=cuda" not in dockerfile
    assert "docker run --rm --gpus all -p 8080:8080" in readme
    assert "from NVIDIA's wheels in the lock (nvidia-cuda-runtime-cu12 12.1.105)" in readme


def test_system_cuda_renders_nvidias_runtime_libraries_on_the_exact_python(
    stdlib_capture: Captured, tmp_path: Path
) -> None:
    folder = rendered_with(stdlib_capture, "tensorflow_system_cuda_cudnn", tmp_path / "system")
    dockerfile = (folder / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith("FROM")] == [
        "FROM nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04 AS cuda",
        f"FROM {BASE} AS packages", f"FROM {BASE}"]
    assert "COPY --from=cuda /usr/local/cuda-12.2/ /usr/local/cuda-12.2/" in dockerfile
    assert "COPY --from=cuda /usr/lib/x86_64-linux-gnu/libcudnn* /usr/local/cuda-12.2/cudnn/" in dockerfile
    assert "NVIDIA_VISIBLE_DEVICES=all" in dockerfile
    # the CUDA layers come before the packages and the app, so editing the function keeps them
    assert dockerfile.index("COPY --from=cuda") < dockerfile.index("COPY --from=packages")


def _stand_in_cuda_base(client: docker.DockerClient, tag: str, work: Path) -> None:
    """nvidia/cuda's runtime layout (lib64 -> targets/x86_64-linux/lib) with NVIDIA's real libcudart
    from its pip wheel; nothing can be pulled here."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "-d", work, "nvidia-cuda-runtime-cu12==12.1.105"], check=True)
    lib = work / "root/usr/local/cuda-12.2/targets/x86_64-linux/lib"
    lib.mkdir(parents=True)
    with zipfile.ZipFile(next(work.glob("nvidia_cuda_runtime_cu12-*.whl"))) as wheel:
        (lib / "libcudart.so.12").write_bytes(wheel.read("nvidia/cuda_runtime/lib/libcudart.so.12"))
    (work / "root/usr/local/cuda-12.2/lib64").symlink_to("targets/x86_64-linux/lib")
    (work / "root/Dockerfile").write_text("FROM scratch\nCOPY usr/ /usr/\n")
    client.images.build(path=str(work / "root"), tag=tag, rm=True)


def test_system_cuda_image_builds_and_loads_the_cuda_runtime(
    stdlib_capture: Captured, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    found = recorded("cupy_system_cuda")
    assert found is not None and found.base
    _stand_in_cuda_base(docker_client, found.base, tmp_path / "base")
    folder = rendered_with(stdlib_capture, "cupy_system_cuda", tmp_path / "system")
    image, _ = docker_client.images.build(path=str(folder), rm=True, network_mode="none")
    try:
        # The runtime is on the loader's path and answers without a driver (no GPU here).
        probe = ("import ctypes; cudart = ctypes.CDLL('libcudart.so.12'); v = ctypes.c_int(); "
                 "cudart.cudaRuntimeGetVersion(ctypes.byref(v)); print(v.value)")
        output = docker_client.containers.run(image.id, ["python", "-c", probe], remove=True, network_mode="none")
        assert output.decode().strip() == "12010"  # the wheel's libcudart: CUDA 12.1
        env = image.attrs["Config"]["Env"]
        assert "CUDA_HOME=/usr/local/cuda" in env and "NVIDIA_REQUIRE_CUDA=cuda>=12.2" in env
        assert image.attrs["Config"]["User"] == "10001:10001"
    finally:
        docker_client.images.remove(image.id, force=True)
        docker_client.images.remove(found.base, force=True)
    shutil.rmtree(tmp_path, ignore_errors=True)
