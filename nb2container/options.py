"""The one configuration surface, and the one table of flags that fills it.

The command line (argparse) and ``%containerize`` (IPython's magic_arguments, argparse
underneath) both declare their flags from ``FLAGS``, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2container.captured import parse_examples
from nb2container.kernel.request import CaptureRequest


@dataclass(frozen=True)
class Options:
    notebook: Path | None  # None: a live kernel whose notebook file is not known
    function: str | None = None
    tag: str | None = None
    output: Path | None = None
    report: Path | None = None
    junit: Path | None = None  # JUnit XML of the smoke test (and --verify-notebook)
    port: int = 8000
    kernel: str | None = None
    timeout: int = 600
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9
    platform: str = "linux/amd64"
    max_artifact_mb: int = 2048  # per artifact or data file
    no_build: bool = False  # render the folder only
    no_smoke: bool = False  # build and tag without replaying the calls
    verify_notebook: bool = False  # also re-run the whole notebook inside the image's environment (nbval)
    gpus: str | None = None  # "all" or a count: GPUs given to the smoke-test container
    examples: tuple[str, ...] = ()  # extra calls as JSON bodies (--example)
    bind: tuple[str, ...] = ()  # parameters the server supplies with the notebook's object (--bind)
    no_bind: bool = False  # never infer bound parameters
    push: str | None = None  # REGISTRY/REPO to push to once the smoke test passed
    batch: str | None = None  # micro-batching of model calls: "auto" or "model.predict,..." (--batch)
    batch_max_size: int = 64
    batch_max_wait_ms: float = 5.0
    allow_stale: bool = False  # ship even when saved outputs differ from what the code gives now
    secrets: tuple[str, ...] = ()  # globals read from the container's environment at run time (--secret)
    not_secrets: tuple[str, ...] = ()  # globals the secret scan flagged that are not secrets (--not-secret)
    debug: bool = False
    # The platform team's image (configuration, issue: base, packages, environment, labels, templates)
    base_image: str | None = None  # FROM this instead of python:X.Y.Z-slim-bookworm (inspected first)
    system_packages: tuple[str, ...] = ()  # Debian packages to add, downloaded on the host, installed offline
    env: dict[str, str] = field(default_factory=dict)  # ENV in the image
    labels: dict[str, str] = field(default_factory=dict)  # LABEL on the image
    templates: Path | None = None  # a folder of Jinja2 templates extending the packaged ones by blocks
    engine: str = "auto"  # docker | podman | buildah, or the first that answers (engines.AUTO_ORDER)
    runs_dir: Path | None = None  # the store of builds (runs.py); default: under Jupyter's data directory
    wait: bool = False  # %containerize: hold the kernel until the verdict (scripts, nbval), as the CLI does

    def capture_request(self, function: str, staging: Path) -> CaptureRequest:
        """What the kernel is asked to capture (the CLI's fresh kernel and the magic's live one)."""
        return CaptureRequest(function, str(staging), self.max_artifact_mb * 1024**2,
                              tuple(parse_examples(self.examples)), self.bind, self.no_bind)


def key_value(text: str) -> tuple[str, str]:
    """``--env KEY=VALUE`` / ``--label KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    where: frozenset[str]  # CLI subcommands, and "magic" for %containerize
    kwargs: dict[str, Any] = field(default_factory=dict)
    configurable: bool = True  # also a key of the configuration file and the environment (config.py)

    @property
    def key(self) -> str:
        """The Options field, the configuration key, and (upper-cased) the environment variable's suffix."""
        return str(self.kwargs.get("dest") or self.names[-1].lstrip("-").replace("-", "_"))

    @property
    def kind(self) -> str:
        """bool | list | table | int | float | path | str: how a value of this key is written."""
        action, kind = self.kwargs.get("action"), self.kwargs.get("type")
        if action == "store_true":
            return "bool"
        if action == "append":
            return "table" if kind is key_value else "list"
        return {int: "int", float: "float", Path: "path"}.get(kind, "str") if isinstance(kind, type) else "str"

    @property
    def commas(self) -> bool:
        """A list whose items may also be given comma-separated (--bind a,b --bind c)."""
        return str(self.kwargs.get("metavar", "")).endswith("[,NAME]")

    def argparse_kwargs(self) -> dict[str, Any]:
        """Defaults live in Options, not here: a flag not given is absent, so that the configuration
        file and the environment can fill it (config.py)."""
        return {**{k: v for k, v in self.kwargs.items() if k != "default"}, "default": argparse.SUPPRESS}

    def value(self, given: Any) -> Any:
        """A value as argparse gives it, as the Options field holds it."""
        if self.kind == "list":
            items = [given] if isinstance(given, str) else list(given)
            if self.commas:
                items = [n.strip() for group in items for n in str(group).split(",") if n.strip()]
            return tuple(items)
        if self.kind == "table":
            return dict(given)
        return given


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on a command line (or to the magic), as Options values by key."""
    parsed = vars(args)
    return {flag.key: flag.value(parsed[flag.key]) for flag in FLAGS if flag.key in parsed}


_BUILDS = frozenset({"build", "render", "magic"})
_SMOKES = frozenset({"build", "test", "magic"})
_ALL = frozenset({"build", "render", "test", "magic"})
_CLI = frozenset({"build", "render", "test", "freeze"})

FLAGS: tuple[Flag, ...] = (
    Flag(("--function",), _CLI, {"help": "the function to serve (default: the last one in a cell "
                                          "tagged `serve`, else `predict`)"}),
    Flag(("--kernel",), _CLI, {"help": "kernel name (default: the notebook's kernelspec)"}),
    Flag(("--tag",), _BUILDS, {"help": "image tag (default: NOTEBOOK-FUNCTION:latest)"}),
    Flag(("--output",), _BUILDS, {"type": Path, "help": "build folder (default build/FUNCTION)"}),
    Flag(("--platform",), _BUILDS | {"freeze"}, {"default": "linux/amd64", "choices": ["linux/amd64", "linux/arm64"],
                                    "help": "image platform (default linux/amd64)"}),
    Flag(("--port",), _ALL, {"type": int, "default": 8000,
                             "help": "port the server listens on inside the container (default 8000)"}),
    Flag(("--max-artifact-mb",), _ALL | {"freeze"}, {"type": int, "default": 2048, "metavar": "MB",
                                        "help": "largest object or data file to ship, in MiB (default 2048)"}),
    Flag(("--no-build",), frozenset({"magic"}), {"action": "store_true",
                                                 "help": "render the build folder only"}),
    Flag(("--runs-dir",), frozenset({"build", "magic"}), {
        "type": Path, "metavar": "DIR", "help": "where builds are recorded for `nb2container runs` (default: "
                                                "nb2container/runs under `jupyter --data-dir`)"}),
    Flag(("--wait",), frozenset({"magic"}), {
        "action": "store_true", "help": "hold the kernel until the verdict and return the result (scripts, "
                                        "nbval); by default the build runs outside the kernel and a handle "
                                        "returns at once"}),
    Flag(("--no-smoke",), frozenset({"build", "magic"}), {
        "action": "store_true", "help": "build and tag without replaying the notebook's calls"}),
    Flag(("--verify-notebook",), _SMOKES, {
        "action": "store_true",
        "help": "also re-run the whole notebook inside the image's environment and check every "
                "cell's stored output with nbval (in a sibling image; the image itself is unchanged)"}),
    Flag(("--gpus",), _SMOKES, {"help": "GPUs for the smoke-test container: `all` or a count"}),
    Flag(("--example",), _SMOKES, {
        "action": "append", "dest": "examples", "metavar": "JSON",
        "help": "an extra call to check, as the JSON body of a request, e.g. "
                "'{\"area_sqft\": 1500}' (repeatable)"}),
    Flag(("--bind",), _ALL, {
        "action": "append", "metavar": "NAME[,NAME]",
        "help": "parameters the server fills with the notebook's object (a model passed as an "
                "argument); inferred when every call passes the same object with no JSON form"}),
    Flag(("--no-bind",), _ALL, {"action": "store_true", "help": "never infer bound parameters"}),
    Flag(("--push",), frozenset({"build", "magic"}), {
        "metavar": "REGISTRY/REPO",
        "help": "after the smoke test passed (never before), push the image there; the report and "
                "deploy/ name it by digest"}),
    Flag(("--batch",), _BUILDS, {
        "nargs": "?", "const": "auto", "metavar": "OBJECT.METHOD[,...]",
        "help": "micro-batch the model calls of concurrent requests: `auto` (the default when given "
                "alone) batches predict/predict_proba/... of the notebook's saved objects; or name "
                "them, e.g. model.predict"}),
    Flag(("--batch-max-size",), _BUILDS, {"type": int, "default": 64, "metavar": "N",
                                          "help": "most requests in one batch (default 64)"}),
    Flag(("--batch-max-wait-ms",), _BUILDS, {"type": float, "default": 5.0, "metavar": "MS",
                                             "help": "longest a call waits for others to join its "
                                                     "batch (default 5 ms; a lone call never waits)"}),
    Flag(("--allow-stale",), _SMOKES, {
        "action": "store_true",
        "help": "ship the image even when outputs saved in the notebook differ from what its code gives "
                "now (recorded in the report, the image's labels and its README)"}),
    Flag(("--secret",), _ALL | {"freeze"}, {
        "action": "append", "dest": "secrets", "metavar": "NAME[,NAME]",
        "help": "a global the function reads that is a secret: the image reads it from the environment "
                "variable NAME at run time, never from a file or layer"}),
    Flag(("--not-secret",), _ALL | {"freeze"}, {
        "action": "append", "dest": "not_secrets", "metavar": "NAME[,NAME]",
        "help": "a global the secret scan flagged that is not a secret: ship its value as it is"}),
    Flag(("--base-image",), _BUILDS | {"freeze"}, {
        "metavar": "IMAGE",
        "help": "build FROM this image instead of python:X.Y.Z-slim-bookworm; it is inspected first: its "
                "Python must be the kernel's exact version, its C library and distribution must suit the "
                "wheels and the Debian packages"}),
    Flag(("--system-package",), _BUILDS | {"freeze"}, {
        "action": "append", "dest": "system_packages", "metavar": "NAME[,NAME]",
        "help": "a Debian package to add to the image (downloaded on this machine, hash-checked, "
                "installed offline like the ones the wheels need)"}),
    Flag(("--env",), _BUILDS, {"action": "append", "type": key_value, "metavar": "KEY=VALUE",
                               "help": "an environment variable set in the image (repeatable)"}),
    Flag(("--label",), _BUILDS, {"action": "append", "type": key_value, "dest": "labels", "metavar": "KEY=VALUE",
                                 "help": "a label on the image (repeatable)"}),
    Flag(("--templates",), _BUILDS, {
        "type": Path, "metavar": "FOLDER",
        "help": "a folder of Jinja2 templates that extend the packaged ones by their blocks "
                "({%% extends \"nb2container/Dockerfile.j2\" %%})"}),
    Flag(("--engine",), _ALL, {
        "choices": ["auto", "docker", "podman", "buildah"],
        "help": "what builds and runs the image: the Docker Engine API (local, Podman's service, or the remote "
                "engine DOCKER_HOST names), Podman, or Buildah (with Podman to run the smoke test); auto "
                "(the default): the first of docker, podman, buildah that answers"}),
    Flag(("--report",), _SMOKES, {"type": Path, "help": "write the JSON report here"}),
    Flag(("--junit",), _SMOKES, {"type": Path, "metavar": "FILE",
                                 "help": "write the smoke test (and --verify-notebook) as JUnit XML"}),
    Flag(("--rel-tol",), _SMOKES, {"type": float, "default": 1e-6,
                                   "help": "relative tolerance for numbers (default 1e-6)"}),
    Flag(("--abs-tol",), _SMOKES, {"type": float, "default": 1e-9,
                                   "help": "absolute tolerance for numbers (default 1e-9)"}),
    Flag(("--timeout",), _CLI, {"type": int, "default": 600,
                                "help": "seconds a notebook cell may run (default 600)"}),
    Flag(("--json",), frozenset({"freeze"}), {"action": "store_true", "dest": "as_json",
                                              "help": "print the frozen environment as JSON"},
         configurable=False),  # how this one command prints
    Flag(("--debug",), _ALL | {"freeze"}, {"action": "store_true", "help": "show tracebacks on errors"}),
    Flag(("-v", "--verbose"), _CLI, {"action": "store_true", "help": "show the full build log"},
         configurable=False),
)


def flags_for(where: str) -> list[Flag]:
    return [flag for flag in FLAGS if where in flag.where]
