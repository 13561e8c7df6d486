"""The one configuration surface, and the one table of flags that fills it.

The command line (argparse) and ``%containerize`` (IPython's magic_arguments, argparse
underneath) both declare their flags from ``FLAGS``, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
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

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, **given: Any) -> Options:
        """Options from parsed flags; flags a command does not have keep their defaults."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in vars(args).items() if k in names and v is not None}
        if "examples" in values:
            values["examples"] = tuple(values["examples"])
        for name in ("bind", "secrets", "not_secrets"):  # --bind a,b --bind c
            if name in values:
                values[name] = tuple(n.strip() for group in values[name] for n in group.split(",") if n.strip())
        return cls(**{**values, **given})

    def capture_request(self, function: str, staging: Path) -> CaptureRequest:
        """What the kernel is asked to capture (the CLI's fresh kernel and the magic's live one)."""
        return CaptureRequest(function, str(staging), self.max_artifact_mb * 1024**2,
                              tuple(parse_examples(self.examples)), self.bind, self.no_bind)


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    where: frozenset[str]  # CLI subcommands, and "magic" for %containerize
    kwargs: dict[str, Any] = field(default_factory=dict)


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
                                              "help": "print the frozen environment as JSON"}),
    Flag(("--debug",), _ALL | {"freeze"}, {"action": "store_true", "help": "show tracebacks on errors"}),
    Flag(("-v", "--verbose"), _CLI, {"action": "store_true", "help": "show the full build log"}),
)


def flags_for(where: str) -> list[Flag]:
    return [flag for flag in FLAGS if where in flag.where]
