"""The plain, JSON-serialisable dataclasses that pass between the stages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nb2container import cache


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # inspect.Parameter kind name, e.g. POSITIONAL_OR_KEYWORD
    has_default: bool
    default: str | None  # repr of the default value
    annotation: str | None


@dataclass(frozen=True)
class Artifact:
    name: str  # the notebook global it restores
    file: str  # relative to artifacts/
    type: str
    format: str  # pickle | joblib | cloudpickle
    size_bytes: int
    at_definition: bool = False  # a definition evaluates it (a default, a decorator): load it first


@dataclass(frozen=True)
class DataFile:
    """A file the function reads at call time, shipped at the path the code names."""

    path: str  # as the code wrote it
    image_path: str  # absolute, inside the image
    size_bytes: int
    found: str  # how it was found: read during a call, or named in the code


@dataclass(frozen=True)
class ServingSpec:
    """What the generated module holds: the function and everything it needs."""

    function: str
    signature: str
    parameters: tuple[Parameter, ...]
    is_async: bool
    imports: tuple[str, ...]
    constants: tuple[tuple[str, str], ...]
    definitions: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    files: tuple[DataFile, ...] = ()
    codecs: dict[str, Any] = field(default_factory=dict)  # {"params": {name: codec}, "result": codec}
    bound: dict[str, str] = field(default_factory=dict)  # parameter -> the module global the server passes
    prints: bool = False  # the function shows its answer with print: responses carry stdout
    secrets: tuple[str, ...] = ()  # globals the module reads from the environment (--secret), never a value


@dataclass(frozen=True)
class KernelInterpreter:
    python_version: str
    implementation: str
    executable: str
    machine: str
    module_distributions: dict[str, list[str]]
    gpu_used: list[str] = field(default_factory=list)  # the frameworks the kernel ran on a GPU through
    environment: str = ""  # kernel/capture.environment_fingerprint: unchanged, the freeze is reused


@dataclass(frozen=True)
class Example:
    """One recorded call of the function, and what the notebook says it returned."""

    cell: int  # 1-based position of the cell in the notebook
    execution_count: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    fresh_result: Any  # JSON form of the result in the fresh run
    fresh_text: str | None  # text/plain of the result in the fresh run
    stored_text: str | None  # the notebook's stored text/plain for this call, when it shows one
    replayable: bool = True
    reason: str = ""
    source: str = "cell"  # "cell": a call the notebook made; "example": given with --example
    body: Any = None  # the request that replays it (bound parameters left out)
    shown: str = ""  # the call as a person reads it
    stdout: str = ""  # what it printed in the fresh run
    stored_stdout: str | None = None  # what the notebook stored as the cell's printed output
    # (the cell's saved stdout, the fresh stdout of every call in it) when several calls printed it all
    group_stdout: tuple[str, str] | None = None
    unchecked: str = ""  # why no saved output can be compared with this call, when none can
    repeats: bool | None = None  # made again right after the run, it gave the same answer (None: not tried)
    golden: bool = True  # in the folder's golden tests (not when it passes or returns a secret)


@dataclass(frozen=True)
class Capture:
    notebook: Path | None  # None: a live kernel whose notebook file is unknown (never saved)
    notebook_sha256: str  # of the file; of the executed cells' sources when there is none
    spec: ServingSpec
    interpreter: KernelInterpreter
    modules: tuple[str, ...]
    examples: tuple[Example, ...]
    calls_total: int
    artifacts_dir: Path  # the artifacts' files; the data files are beside it, under files/
    warnings: tuple[str, ...] = ()
    # --secret globals' values, for the smoke run's environment only: never written anywhere.
    secret_values: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def notebook_name(self) -> str:
        return self.notebook.name if self.notebook else "unsaved notebook"

    @property
    def files_dir(self) -> Path:
        return self.artifacts_dir.parent / "files"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    wheel: str  # file name in the wheelhouse
    sha256: str
    source: str = "index"  # or "local <path>" (built here from an editable/local install), "vcs <url>@<commit>"


@dataclass(frozen=True)
class SystemPackage:
    """A Debian package the image needs for a shared library a compiled module links to."""

    name: str
    version: str
    deb: str  # file name under debs/
    sha256: str
    needed_by: tuple[str, ...] = ()  # "libgomp.so.1 (lightgbm/lib/lib_lightgbm.so)"


@dataclass(frozen=True)
class LeftOut:
    """Something of the frozen environment that the image does not carry (see lean.py)."""

    what: str  # "nvidia-nccl-cu12 2.28.9" (a package) or "pandas/tests" (a folder of site-packages)
    why: str
    bytes: int  # installed size it saves

    @property
    def suite(self) -> bool:
        return "/" in self.what


@dataclass(frozen=True)
class Cuda:
    """The CUDA the image needs (see cuda.py); absent for a CPU-only image."""

    version: str  # MAJOR.MINOR of the runtime
    source: str  # "pip": NVIDIA's wheels in the lock; "system": taken from an nvidia/cuda image
    shipped: str  # what provides it: "nvidia-cuda-runtime-cu12 12.1.105", "the system CUDA 12.2.2"
    frameworks: tuple[str, ...] = ()  # "torch 2.3.0+cu121 (built for CUDA 12.1)"
    base: str | None = None  # the nvidia/cuda image the libraries come from (source "system")
    cudnn: bool = False  # the system's cuDNN comes along too
    driver: str | None = None  # the kernel's driver and GPUs, when nvidia-smi answered


def default_base(python_version: str) -> str:
    """The base image unless the configuration names one: the official image of that exact Python."""
    return f"python:{python_version}-slim-bookworm"


@dataclass(frozen=True)
class FrozenEnvironment:
    python_version: str
    pins: tuple[Pin, ...]
    roots: tuple[str, ...]  # distributions the function imports directly
    unmapped_modules: tuple[str, ...] = ()
    system_packages: tuple[SystemPackage, ...] = ()
    unplaced_libraries: tuple[str, ...] = ()  # sonames needed that no package could be found for
    cuda: Cuda | None = None
    left_out: tuple[LeftOut, ...] = ()  # GPU runtime a CPU image cannot use, package test suites
    wheel_dir: Path = field(default_factory=cache.wheels)  # where the pins' wheels are
    deb_dir: Path = field(default_factory=cache.debs)  # where the system packages' .deb files are
    base_image: str | None = None  # the platform team's base (base_image); None: python:X.Y.Z-slim-bookworm
    base_digest: str | None = None  # the base's registry digest or image id, when it was inspected

    @property
    def packages(self) -> dict[str, str]:
        return {pin.name: pin.version for pin in self.pins}

    @property
    def base(self) -> str:
        return self.base_image or default_base(self.python_version)


@dataclass(frozen=True)
class BuiltImage:
    id: str
    size_bytes: int
    steps: int = 0  # the build's steps, and how many the engine took from its cache
    cached: int = 0
    layers: tuple[str, ...] = ()  # the layers' content digests, base first (empty where the engine does not say)

    def counted(self, log: list[str], step_prefix: str) -> BuiltImage:
        """This image with its build log's steps and cached steps counted (Docker's "Step 3/9",
        Buildah's "STEP 3/9"; both say "Using cache" for a step they did not run)."""
        steps = [line for line in log if line.startswith(step_prefix) and ": FROM " not in line]  # FROM: no cache
        return replace(self, steps=len(steps), cached=sum("Using cache" in line for line in log))


@dataclass(frozen=True)
class Usage:
    """What the container used during the smoke run (sizes the deploy manifests)."""

    memory_peak_bytes: int
    cpu_seconds: float
    wall_seconds: float


@dataclass
class SmokeCase:
    cell: int  # 1-based cell of the notebook; 0 when only the execution count is known
    call: str
    request: Any
    expected: Any
    expected_from: str  # what the container's answer is compared with, and how the saved output compared
    actual: Any = None
    passed: bool = False
    skipped: bool = False  # not replayable over JSON (see difference)
    difference: str | None = None
    note: str = ""
    execution_count: int | None = None
    expected_stdout: str | None = None
    actual_stdout: str | None = None
    stored: Any = None  # the notebook's saved output, read back (None when it has none or it is not a value)
    stored_stdout: str | None = None  # what the saved notebook shows this call printed
    repeats: bool | None = None  # Example.repeats: False means the function itself is random
    stale: bool = False  # the saved output is not what the notebook's code gives now
    stale_difference: str | None = None
    checked: str = ""  # the saved output: "equal", "stale", or "not compared: <why>"


def cell_label(position: int | None, count: int | None) -> str:
    """The one way a cell is named everywhere (tables, refusals, reports): its place in the notebook
    and, as Jupyter shows it beside the cell, its execution count: "cell 12 [In 74]"."""
    if position and count:
        return f"cell {position} [In {count}]"
    if position:
        return f"cell {position}"
    return f"In [{count}]" if count else "an --example call"


@dataclass
class SmokeReport:
    cases: list[SmokeCase] = field(default_factory=list)
    health: bool = False
    usage: Usage | None = None

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def skipped(self) -> int:
        return sum(case.skipped for case in self.cases)

    @property
    def stale(self) -> int:
        return sum(case.stale for case in self.cases)

    @property
    def not_compared(self) -> int:
        return sum(case.checked.startswith("not compared") for case in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed - self.skipped

    @property
    def ok(self) -> bool:
        return self.health and self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"health": self.health, "passed": self.passed, "failed": self.failed,
                "skipped": self.skipped, "stale": self.stale, "not_compared": self.not_compared,
                "usage": asdict(self.usage) if self.usage else None,
                "cases": [asdict(case) for case in self.cases]}
