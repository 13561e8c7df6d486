"""Ship what runs: what an image leaves out of the frozen environment, and why.

Two rules, each reported (``LeftOut``) so that nothing leaves the image silently:

- **No GPU runtime on a CPU image.** When the kernel used no GPU and no ``--gpus`` is asked
  for, NVIDIA's wheels (``nvidia-*``, ``triton``...) are left out of the lock wherever every
  package that requires them works without them (``CPU_FALLBACK``, checked one by one), and a
  CUDA build of PyTorch or xgboost is replaced by the same version's CPU build when the package
  sources offer it. Where neither holds, the runtime stays and the build says how much of the image it is
  and how to get the CPU build.
- **No test suites.** A package's own ``tests`` folders are left out of every image when no
  module of the package outside them names them (pandas/tests alone is 46 MB).
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nb2container import cache
from nb2container.cuda import FRAMEWORKS
from nb2container.model import LeftOut, Pin

# Wheels that hold only GPU code: CUDA's libraries, and kernels compiled for GPUs.
GPU_ONLY = re.compile(r"^(nvidia-.+|cuda-toolkit|cuda-bindings|cuda-pathfinder|cuda-python|triton)$")
# Packages that require GPU-only wheels yet run on the CPU without them, and why (each checked).
CPU_FALLBACK = {
    "xgboost": "xgboost loads NCCL only for distributed training on GPUs",
    "tensorflow": "TensorFlow runs on the CPU when CUDA's libraries are absent",
}
# Packages whose usual Linux wheel carries CUDA, and their CPU build of the same version:
# (distribution, version). PyTorch publishes "+cpu" builds on its own index; xgboost publishes
# xgboost-cpu on PyPI (since 2.1): the same `xgboost` module, 5 MB instead of 130.
CPU_BUILDS: dict[str, Callable[[str], tuple[str, str]]] = {
    "torch": lambda version: ("torch", f"{version}+cpu"),
    "xgboost": lambda version: ("xgboost-cpu", version),
}
_TEST_FOLDERS = {"tests", "test"}


@dataclass(frozen=True)
class GpuPlan:
    packages: dict[str, str]  # the closure to lock: GPU-only wheels left out, CPU builds swapped in
    left_out: tuple[LeftOut, ...]
    swapped: tuple[str, ...] = ()  # packages now locked as their CPU build (see CPU_BUILDS)
    warning: str = ""  # GPU runtime kept on a CPU image: how much, and how to get the CPU build


def plan_gpu(packages: dict[str, str], requires: dict[str, tuple[str, ...]], cuda_frameworks: set[str],
             sizes: dict[str, int], cpu_build: Callable[[str, str], bool]) -> GpuPlan:
    """The closure of an image that serves on the CPU, for a kernel that used no GPU.

    ``requires``: package -> the packages it requires (within the closure); ``cuda_frameworks``:
    the frameworks installed as CUDA builds; ``sizes``: installed bytes per package;
    ``cpu_build(name, version)``: whether the CPU build of that version can be had.
    """
    result = dict(packages)
    swapped = []
    for name, cpu in CPU_BUILDS.items():
        version = packages.get(name)
        if not version or "+" in version or (name in FRAMEWORKS and name not in cuda_frameworks):
            continue  # not installed, a local build already (+cpu), or a CPU build by its own account
        distribution, cpu_version = cpu(version)
        if cpu_build(distribution, cpu_version):
            del result[name]
            result[distribution] = cpu_version
            swapped.append(name)
    runs_without = set(CPU_FALLBACK) | set(swapped)
    required_by: dict[str, set[str]] = {}
    for name, needs in requires.items():
        for need in needs:
            required_by.setdefault(need, set()).add(name)
    dropped: dict[str, str] = {}
    changed = True
    while changed:  # a GPU wheel required only by GPU wheels being left out goes too (cudnn -> cublas)
        changed = False
        for name in sorted(result):
            users = required_by.get(name, set()) & set(packages)
            if name in dropped or not GPU_ONLY.match(name) or not users:
                continue
            if users <= runs_without | set(dropped):
                direct = sorted(users - set(dropped)) or sorted(users)
                dropped[name] = _why(direct, swapped)
                changed = True
    builds = [LeftOut(f"{name} {packages[name]}", "built with CUDA: the image has its CPU build, "
                      + " ".join(CPU_BUILDS[name](packages[name])), sizes.get(name, 0)) for name in swapped]
    left_out = tuple(builds) + tuple(LeftOut(f"{name} {packages[name]}", why, sizes.get(name, 0))
                                     for name, why in sorted(dropped.items()))
    for name in dropped:
        del result[name]
    kept = sorted(n for n in result if GPU_ONLY.match(n))
    warning = ""
    if kept:
        total = sum(sizes.get(n, 0) for n in kept)
        needing = sorted({user for n in kept for user in required_by.get(n, set())
                          if user in packages and not GPU_ONLY.match(user)})
        shown = ", ".join(kept[:4]) + (" ..." if len(kept) > 4 else "")
        warning = (f"{_mb(total)} of the image is GPU runtime ({shown}), "
                   f"required by {', '.join(needing) or 'the function'}, which the image cannot use on the CPU.")
        if "torch" in needing and "torch" not in swapped:
            version = packages["torch"]
            warning += (f" The kernel has torch {version}, the CUDA build, and no CPU build of it was found. For a "
                        f"lean CPU image, install the CPU build in the notebook's environment (pip install "
                        f"torch=={version} --index-url https://download.pytorch.org/whl/cpu), re-run the "
                        "notebook and build again; to keep CUDA, build with --gpus.")
    return GpuPlan(result, left_out, tuple(swapped), warning)


def _why(users: list[str], swapped: list[str]) -> str:
    reasons = [f"the image gets {user}'s CPU build, which needs no CUDA" if user in swapped
               else CPU_FALLBACK.get(user, f"only {user} needs it") for user in users]
    return f"GPU-only, required by {', '.join(users)}: " + "; ".join(dict.fromkeys(reasons))


_SIZES = r"""
import json, re, sys
from importlib import metadata
sizes = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    sizes[name] = sum(f.size or 0 for f in dist.files or ())
print(json.dumps(sizes))
"""


def installed_sizes(python: str) -> dict[str, int]:
    """Installed bytes of every distribution of the kernel's interpreter (from their RECORD files)."""
    done = subprocess.run([python, "-c", _SIZES], capture_output=True, text=True, check=False, timeout=120)
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if done.returncode == 0 and lines else {}


def test_suites(wheel: Path, sha256: str) -> list[tuple[str, int]]:
    """The package's own test folders in ``wheel`` that nothing outside them imports, with their
    installed bytes (cached by the wheel's hash: reading a big wheel's sources takes seconds)."""
    record = cache.wheels() / f"tests-v2-{sha256[:24]}.json"  # v2: imports from the parent count
    try:
        return [(path, size) for path, size in json.loads(record.read_text())]
    except (OSError, ValueError):
        pass
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        folders: dict[str, int] = {}
        for member in members:
            parts = member.filename.split("/")
            top = next((i for i, part in enumerate(parts[:-1]) if part in _TEST_FOLDERS), None)
            if top is not None and top > 0 and ".dist-info" not in parts[0] and ".data" not in parts[0]:
                folder = "/".join(parts[:top + 1])
                folders[folder] = folders.get(folder, 0) + member.file_size
        if folders:
            sources = {m.filename: archive.read(m).decode("utf-8", "replace") for m in members
                       if m.filename.endswith(".py") and not any(m.filename.startswith(f + "/") for f in folders)}
            folders = {f: size for f, size in folders.items() if not _imported(f, sources)}
    found = sorted(folders.items())
    record.write_text(json.dumps(found))
    return found


def _imported(folder: str, sources: dict[str, str]) -> bool:
    """Whether a module outside ``folder`` imports it: by its dotted name, or from its parent,
    absolutely or relatively (TensorFlow's ``from tensorflow._api.v2 import test`` is ``tf.test``)."""
    dotted = folder.replace("/", ".")
    parent, name = dotted.rsplit(".", 1)
    by_name = re.compile(r"\b" + re.escape(dotted) + r"\b")
    listed = re.compile(rf"\b{re.escape(name)}\b")
    relative_string = re.compile(rf"import_module\(\s*['\"]\.{re.escape(name)}\b")
    for path, text in sources.items():
        package = path.rsplit("/", 1)[0].split("/")
        if by_name.search(text) or (".".join(package) == parent and relative_string.search(text)):
            return True
        for dots, module, names in _FROM_IMPORT.findall(text):
            if dots:
                base = package[:len(package) - len(dots) + 1]
                module = ".".join(base + ([module] if module else []))
            if module == dotted or module.startswith(dotted + ".") or (module == parent and listed.search(names)):
                return True
    return False


_FROM_IMPORT = re.compile(r"\bfrom\s+(\.*)([\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)")


def suites_left_out(pins: tuple[Pin, ...], wheel_dir: Path) -> tuple[LeftOut, ...]:
    """The test suites the image leaves out, as paths under site-packages."""
    return tuple(LeftOut(path, f"test suite of {pin.name}: nothing imports it at run time", size)
                 for pin in sorted(pins, key=lambda p: p.name)
                 for path, size in test_suites(wheel_dir / pin.wheel, pin.sha256))


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def describe(left_out: tuple[LeftOut, ...]) -> str:
    """One line for people: what the image leaves out and what it saves."""
    if not left_out:
        return "nothing"
    total = sum(item.bytes for item in left_out)
    suites = [item for item in left_out if item.suite]
    gpu = [item for item in left_out if not item.suite]
    parts = []
    if gpu:
        parts.append(f"GPU runtime {', '.join(item.what for item in gpu)}")
    if suites:
        parts.append(f"{len(suites)} test suite(s) ({_mb(sum(item.bytes for item in suites))})")
    return f"{'; '.join(parts)}: {_mb(total)} in all" if gpu and suites else parts[0]
