"""The host's side of a capture: read what the kernel wrote and turn it into a ``Capture``.

The CLI (a notebook run by nbclient) and the magic (the live kernel) both have the kernel
write ``capture.json`` with the same code (``kernel.capture.capture_to_file``); this reads
it the same way for both, so the two entry points give the same spec, lock and module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nb2container.errors import CaptureError, UsageError
from nb2container.model import (
    Artifact,
    Capture,
    DataFile,
    Example,
    KernelInterpreter,
    Parameter,
    ServingSpec,
)


def parse_examples(examples: tuple[str, ...]) -> list[Any]:
    """``--example`` values as request bodies (a JSON object or array each)."""
    bodies = []
    for text in examples:
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"The example {text!r} is not valid JSON ({exc}). Give a JSON object "
                             "of argument names to values, e.g. '{\"x\": 1}'.") from None
        if not isinstance(body, (dict, list)):
            raise UsageError(f"The example {text!r} must be a JSON object (argument names to values) "
                             "or a JSON array (positional arguments).")
        bodies.append(body)
    return bodies


def read_raw(staging: Path, where: str, label: Callable[[int], str] = lambda count: f"In [{count}]") -> dict[str, Any]:
    """The kernel's capture.json; a refusal becomes a CaptureError prefixed with ``where``, its
    cells named by ``label`` (execution count -> model.cell_label)."""
    raw: dict[str, Any] = json.loads((staging / "capture.json").read_text())
    raw["warnings"] = [name_cells(text, label) for text in raw.get("warnings", [])]
    refusal = raw.get("refusal")
    if refusal:
        message = name_cells(str(refusal["message"]), label)
        if refusal.get("candidates"):
            message += " Functions the notebook defines: " + ", ".join(
                f"`{name}`" for name in refusal["candidates"]) + "."
        raise CaptureError(f"{where}: {message}" if where else message)
    return raw


def name_cells(text: str, label: Callable[[int], str]) -> str:
    """The kernel names a cell by the count it ran with, as "In [n]"; the host knows its place."""
    return re.sub(r"\bIn \[(\d+)\]", lambda found: label(int(found.group(1))), text)


def to_capture(
    raw: dict[str, Any],
    *,
    notebook: Path | None,
    notebook_sha256: str,
    examples: list[Example],
    files_found: list[str],
    warnings: list[str],
    staging: Path,
) -> Capture:
    """``files_found`` says, per data file in ``raw["files"]``, how it was found (for people)."""
    spec = ServingSpec(
        function=raw["function"],
        signature=raw["signature"],
        parameters=tuple(Parameter(**p) for p in raw["parameters"]),
        is_async=raw["is_async"],
        imports=tuple(raw["imports"]),
        constants=tuple((name, value) for name, value in raw["constants"]),
        definitions=tuple(raw["definitions"]),
        artifacts=tuple(Artifact(**a) for a in raw["artifacts"]),
        files=tuple(DataFile(f["path"], f["image_path"], f["size_bytes"], found)
                    for f, found in zip(raw["files"], files_found, strict=True)),
        codecs=raw["interface"]["codecs"],
        bound=raw["interface"]["bound"],
        prints=raw["interface"]["prints"],
    )
    return Capture(
        notebook=notebook,
        notebook_sha256=notebook_sha256,
        spec=spec,
        interpreter=KernelInterpreter(**raw["environment"]),
        modules=tuple(raw["modules"]),
        examples=tuple(examples),
        calls_total=raw["calls_total"],
        artifacts_dir=staging / "artifacts",
        warnings=tuple([*warnings, *raw["warnings"]]),
    )


def example_from_call(
    call: dict[str, Any], cell: int, stored_text: str | None, stored_stdout: str | None = None
) -> Example:
    return Example(
        cell=cell,
        execution_count=call["execution_count"],
        args=call["args"],
        kwargs=call["kwargs"],
        fresh_result=call["result"],
        fresh_text=call["result_text"],
        stored_text=stored_text,
        replayable=call["replayable"] and "body" in call,
        reason=call["reason"],
        source=call.get("source", "cell"),
        body=call.get("body"),
        shown=call.get("shown", ""),
        stdout=call.get("stdout", ""),
        stored_stdout=stored_stdout,
        repeats=None if "again" not in call else (call["again"]["result"] == call["result"]
                                                  and (call["again"]["stdout"] or "") == (call.get("stdout") or "")),
    )
