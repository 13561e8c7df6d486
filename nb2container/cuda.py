"""CUDA: whether the function's closure needs it, which version, and where the image gets it.

Two halves, so that the logic can be tested on recorded kernel environments:

- ``probe`` runs in the kernel's interpreter and reads facts without importing any framework
  (importing torch takes seconds and may touch the GPU): the CUDA-related distributions and
  their versions, the CUDA version each framework's files say it was built for, whether a
  framework's wheel carries its own CUDA runtime, the system CUDA toolkit and cuDNN, and the
  driver through ``nvidia-smi`` when there is one.
- ``decide`` turns those facts and the closure into a ``Cuda`` (or None for a CPU-only image).

Where CUDA comes from decides the image. NVIDIA's pip wheels (``nvidia-cuda-runtime-cu12``,
CUDA 13's unsuffixed ``nvidia-cuda-runtime``, the ``cuda-toolkit`` meta package) or a wheel
that bundles the runtime (torch before 2.1) are in the lock already: the slim base plus the
variables the NVIDIA container toolkit reads is enough. A framework built for CUDA with
nothing in the closure shipping it (cupy-cuda12x without its ``ctk`` extra, jax's
``cuda12_local``, tensorflow without ``and-cuda``) found it in the system: the image then
takes the CUDA libraries from NVIDIA's ``nvidia/cuda`` runtime image of the matching
version, on top of the official slim image of the exact Python.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from nb2container.model import Cuda

# NVIDIA's CUDA libraries on the index; CUDA 13 dropped the -cuXX suffix.
PIP_CUDA = re.compile(
    r"^(nvidia-(cuda-runtime|cuda-nvrtc|cuda-cupti|cublas|cudnn|cufft|curand|cusolver|cusparse|"
    r"cusparselt|nccl|nvjitlink|nvtx|cufile)(-cu\d+)?|cuda-toolkit)$"
)
PIP_RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")
# Frameworks whose files say which CUDA they were built for (see _PROBE).
FRAMEWORKS = ("torch", "tensorflow", "jaxlib", "jax-cuda11-plugin", "jax-cuda12-plugin",
              "jax-cuda13-plugin", "cupy-cuda11x", "cupy-cuda12x", "cupy-cuda13x")
# nvidia/cuda tags are MAJOR.MINOR.PATCH: the last patch release of each minor version.
_LAST_PATCH = {"11.7": "11.7.1", "11.8": "11.8.0", "12.0": "12.0.1", "12.1": "12.1.1",
               "12.2": "12.2.2", "12.3": "12.3.2", "12.4": "12.4.1", "12.5": "12.5.1",
               "12.6": "12.6.3", "12.8": "12.8.1", "12.9": "12.9.1", "13.0": "13.0.2"}
_LATEST_MINOR = {"11": "11.8", "12": "12.9", "13": "13.0"}


@dataclass(frozen=True)
class CudaFacts:
    """What the kernel's environment says about CUDA (the probe's answer)."""

    distributions: dict[str, str] = field(default_factory=dict)  # CUDA wheels and frameworks: name -> version
    frameworks: dict[str, str] = field(default_factory=dict)  # framework -> CUDA it was built for ("12.1", "12")
    bundled: tuple[str, ...] = ()  # frameworks whose wheel carries libcudart itself
    system: str | None = None  # the system toolkit's version ("12.2.2"), from /usr/local/cuda
    system_cudnn: str | None = None  # major version of a system libcudnn ("8")
    driver: str | None = None  # "550.54.15"
    driver_cuda: str | None = None  # the newest CUDA the driver runs ("12.4")
    gpus: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CudaFacts:
        return cls(data.get("distributions", {}), data.get("frameworks", {}),
                   tuple(data.get("bundled", ())), data.get("system"), data.get("system_cudnn"),
                   data.get("driver"), data.get("driver_cuda"), tuple(data.get("gpus", ())))


_PROBE = r"""
import glob, json, os, re, subprocess, sys
from importlib import metadata

def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pip_cuda = re.compile(sys.argv[1])
frameworks = set(json.loads(sys.argv[2]))
facts = {"distributions": {}, "frameworks": {}, "bundled": [], "system": None, "system_cudnn": None,
         "driver": None, "driver_cuda": None, "gpus": []}

def read(dist, path):
    try:
        return open(dist.locate_file(path), encoding="utf-8", errors="replace").read()
    except OSError:
        return ""

for dist in metadata.distributions():
    name = key(dist.metadata["Name"] or "")
    if not (pip_cuda.match(name) or name in frameworks):
        continue
    facts["distributions"][name] = dist.version
    if name not in frameworks:
        continue
    built = None
    if name == "torch":  # torch/version.py: cuda: Optional[str] = '12.1' (None on CPU builds)
        found = re.search(r"^cuda\b[^=\n]*=\s*'([\d.]+)'", read(dist, "torch/version.py"), re.M)
        built = found and found.group(1)
    elif name == "tensorflow":
        found = re.search(r"'cuda_version':\s*'([\d.]+)'", read(dist, "tensorflow/python/platform/build_info.py"))
        built = found and found.group(1)
    elif name == "jaxlib":  # CUDA jaxlib wheels before the plugins: 0.4.7+cuda11.cudnn86
        found = re.search(r"\+cuda(\d+)", dist.version)
        built = found and found.group(1)
    else:  # jax-cuda12-plugin, cupy-cuda12x: the major version is in the name
        built = re.search(r"cuda(\d+)", name).group(1)
    if built:
        facts["frameworks"][name] = built
        if any("libcudart" in str(f) for f in (dist.files or ())):
            facts["bundled"].append(name)

home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
try:
    facts["system"] = json.load(open(os.path.join(home, "version.json")))["cuda"]["version"]
except (OSError, ValueError, KeyError):
    try:
        found = re.search(r"CUDA Version ([\d.]+)", open(os.path.join(home, "version.txt")).read())
        facts["system"] = found and found.group(1)
    except OSError:
        pass

def run(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""

if facts["system"] is None:
    found = re.search(r"libcudart\.so\.(\d+(?:\.\d+)?)", run(["ldconfig", "-p"]))
    facts["system"] = found and found.group(1)
found = re.search(r"libcudnn\.so\.(\d+)", run(["ldconfig", "-p"]))
facts["system_cudnn"] = found and found.group(1)
rows = [line.split(", ") for line in run(["nvidia-smi", "--query-gpu=name,driver_version",
                                          "--format=csv,noheader"]).splitlines() if ", " in line]
if rows:
    facts["gpus"] = [row[0] for row in rows]
    facts["driver"] = rows[0][1]
    found = re.search(r"CUDA Version:\s*([\d.]+)", run(["nvidia-smi"]))
    facts["driver_cuda"] = found and found.group(1)
print(json.dumps(facts))
"""


def probe(python: str) -> CudaFacts:
    """Read the CUDA facts of the kernel's interpreter ``python`` (nothing is imported)."""
    done = subprocess.run([python, "-c", _PROBE, PIP_CUDA.pattern, json.dumps(FRAMEWORKS)],
                          capture_output=True, text=True, check=False, timeout=120)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return CudaFacts()  # an interpreter that cannot run this has no CUDA we could find
    return CudaFacts.from_json(json.loads(lines[-1]))


def decide(facts: CudaFacts, closure: dict[str, str]) -> Cuda | None:
    """The CUDA the image needs for this closure (canonical name -> version), or None: CPU only."""
    frameworks = {name: built for name, built in facts.frameworks.items() if name in closure}
    wheels = sorted(name for name in closure if PIP_CUDA.match(name))
    if not frameworks and not wheels:
        return None
    shown = tuple(f"{name} {closure[name]} (built for CUDA {built})" for name, built in sorted(frameworks.items()))
    driver = _driver(facts)
    runtime = next((name for name in wheels if PIP_RUNTIME.match(name)), None)
    bundled = sorted(name for name in facts.bundled if name in frameworks)
    if wheels or bundled:
        if runtime:
            version = _minor(closure[runtime])
            shipped = f"{runtime} {closure[runtime]}"
        else:
            version = _best(list(frameworks.values()) + [_wheel_major(name, closure[name]) for name in wheels])
            shipped = f"{', '.join(bundled)} wheel" if bundled else ", ".join(wheels)
        return Cuda(version, "pip", shipped, shown, None, False, driver)
    # A framework built for CUDA and nothing in the closure ships it: the kernel used the system's.
    wanted = _best(list(frameworks.values()))
    system = facts.system or ""
    version = _minor(system) if system and system.split(".")[0] == wanted.split(".")[0] else wanted
    full = system if system.count(".") == 2 and _minor(system) == version else _tag_version(version)
    cudnn = facts.system_cudnn
    flavour = f"cudnn{cudnn}-" if cudnn == "8" else ("cudnn-" if cudnn else "")
    ubuntu = "ubuntu24.04" if int(version.split(".")[0]) >= 13 else "ubuntu22.04"
    base = f"nvidia/cuda:{full}-{flavour}runtime-{ubuntu}"
    return Cuda(version, "system", f"the system CUDA {system or version}", shown, base, bool(cudnn), driver)


def _driver(facts: CudaFacts) -> str | None:
    if not facts.driver:
        return None
    gpus = ", ".join(sorted(set(facts.gpus)))
    return f"{facts.driver} (runs CUDA up to {facts.driver_cuda or '?'}) on {gpus or 'a GPU'}"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _wheel_major(name: str, version: str) -> str:
    """CUDA's major version for one of NVIDIA's wheels: its -cuXX suffix, else (CUDA 13's
    unsuffixed wheels, cuda-toolkit) its own major version, which is CUDA's."""
    found = re.search(r"-cu(\d+)$", name)
    return found.group(1) if found else version.split(".")[0]


def _best(versions: list[str]) -> str:
    """The most precise of the versions with the newest major: "12.1" over "12"."""
    def order(version: str) -> tuple[int, int, int]:
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        return parts[0], len(parts), parts[1] if len(parts) > 1 else 0
    best = max(versions, key=order)
    return best if "." in best else _LATEST_MINOR.get(best, f"{best}.0")


def _tag_version(minor: str) -> str:
    return _LAST_PATCH.get(minor, f"{minor}.0")


def describe(cuda: Cuda | None) -> str:
    """One line for people: the report, the freeze table, the notebook's summary."""
    if cuda is None:
        return "none (CPU only)"
    where = (f"from pip wheels ({cuda.shipped})" if cuda.source == "pip"
             else f"from {cuda.base} (the kernel used {cuda.shipped})")
    text = f"CUDA {cuda.version} {where}"
    if cuda.frameworks:
        text += "; " + ", ".join(cuda.frameworks)
    return text + (f"; driver {cuda.driver}" if cuda.driver else "")
