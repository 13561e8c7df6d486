"""Render a build folder from a capture and a frozen environment (Jinja2 templates).

The folder is plain Docker: ``docker build`` on it gives the same image as nb2container.
Rendering is deterministic: lists are sorted, nothing time-dependent is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2

import nb2container
from nb2container import cache, compare, deploy, openapi, sbom
from nb2container.errors import UsageError
from nb2container.model import Capture, FrozenEnvironment, Pin, SmokeCase
from nb2container.options import Options
from nb2container.report import stale_values, where_label
from nb2container.runtime.layout import IMAGE
from nb2container.templating import environment, overridden

# Debian's and Ubuntu's library folder for each platform (where nvidia/cuda keeps cuDNN).
MULTIARCH = {"linux/amd64": "x86_64-linux-gnu", "linux/arm64": "aarch64-linux-gnu"}

RUNTIME_SOURCE = Path(__file__).resolve().parent / "runtime"  # the server runtime's files (IMAGE.runtime)


def default_tag(notebook: Path | None, function: str) -> str:
    """NOTEBOOK-FUNCTION:latest, or FUNCTION:latest for a notebook that was never saved."""
    stem = f"{notebook.stem}-{function}" if notebook else function
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return f"{name}:latest"


def render(capture: Capture, frozen: FrozenEnvironment, server_pins: list[Pin], folder: Path, tag: str,
           options: Options, stale: list[SmokeCase]) -> None:
    """Write the build folder's files into ``folder`` (empty: ``output.replace`` swaps it in)."""
    context = {**_context(capture, frozen, tag, options.port), "rel_tol": options.rel_tol,
               "abs_tol": options.abs_tol, "multiarch": MULTIARCH.get(options.platform, "x86_64-linux-gnu"),
               "gpus_flag": f"--gpus {options.gpus or 'all'} " if frozen.cuda else "",
               "server_pins": sorted(server_pins, key=lambda p: p.name),
               "batch": options.batch, "batch_max_size": options.batch_max_size,
               "batch_max_wait_ms": f"{options.batch_max_wait_ms:g}",
               "stale": [{"cell": where_label(case), "call": case.call, "stored": stale_values(case, 80)[0],
                          "now": stale_values(case, 80)[1]} for case in stale],
               "sbom_file": sbom.FILE, "sbom_path": sbom.IMAGE_PATH,
               "env": sorted(options.env.items()), "labels": sorted(options.labels.items()),
               "requested_packages": list(options.system_packages),
               "templates": str(options.templates) if options.templates else "",
               "overridden": overridden(options.templates) if options.templates else []}
    (folder / sbom.FILE).write_text(sbom.text(capture, frozen, server_pins, frozen.base, options.platform))
    env = environment(options.templates)
    outputs = {
        "Dockerfile": "Dockerfile.j2",
        "README.md": "README.md.j2",
        "requirements.lock": "requirements.lock.j2",
        "server.lock": "server.lock.j2",
        ".dockerignore": "dockerignore.j2",
        "app/notebook_function.py": "notebook_function.py.j2",
        "tests/test_golden.py": "test_golden.py.j2",
        "left-out.txt": "left-out.txt.j2",
    }
    for target, template in outputs.items():
        path = folder / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_rendered(env, template, context, options.templates))
    compile((folder / "app/notebook_function.py").read_text(), "notebook_function.py", "exec")
    for name, file in zip(IMAGE.runtime, IMAGE.runtime_files, strict=True):  # importable beside the function
        shutil.copyfile(RUNTIME_SOURCE / f"{name}.py", folder / "app" / file)
    shutil.copyfile(compare.__file__, folder / "tests/nb2c_compare.py")
    (folder / "tests/golden_calls.json").write_text(json.dumps(golden_calls(capture), indent=2) + "\n")
    (folder / "app/spec.json").write_text(json.dumps(_spec(capture, frozen), indent=2, sort_keys=True) + "\n")
    document = openapi.document(capture, frozen.python_version)
    (folder / "app/openapi.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    link_or_copy(capture.artifacts_dir, folder / "artifacts", [a.file for a in capture.spec.artifacts])
    if capture.spec.files:
        link_or_copy(capture.files_dir, folder / "files", [f.image_path.lstrip("/") for f in capture.spec.files])
    link_or_copy(frozen.wheel_dir, folder / "wheels", [pin.wheel for pin in frozen.pins])
    link_or_copy(cache.wheels(), folder / "server-wheels", [pin.wheel for pin in server_pins])
    if frozen.system_packages:
        link_or_copy(frozen.deb_dir, folder / "debs", [p.deb for p in frozen.system_packages])
        (folder / "debs/SHA256SUMS").write_text("".join(
            f"{p.sha256}  {p.deb}\n" for p in sorted(frozen.system_packages, key=lambda p: p.deb)))


def _rendered(env: jinja2.Environment, template: str, context: dict[str, Any], overrides: Path | None) -> str:
    """One template rendered; a mistake in a customized one is the user's to fix, so say where."""
    try:
        return env.get_template(template).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name}, line {exc.lineno}"
        raise UsageError(f"The template {where} is not valid Jinja2: {exc.message}. Fix it, then build "
                         "again.") from None
    except jinja2.UndefinedError as exc:
        if overrides is None:
            raise  # a packaged template's own mistake: a bug in nb2container
        raise UsageError(f"Rendering {template} with the templates in {overrides} failed: {exc.message}. A "
                         "template may use only what nb2container gives it: "
                         f"{', '.join(sorted(context))}. Fix the name, then build again.") from None


def link_or_copy(source: Path, target: Path, names: list[str]) -> None:
    """``names`` from ``source`` into ``target``: hard links where possible (big wheels, no copy)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(names):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / name, target / name)  # same file system: no copy of big wheels
        except OSError:
            shutil.copyfile(source / name, target / name)


def _context(capture: Capture, frozen: FrozenEnvironment, tag: str, port: int) -> dict[str, Any]:
    spec = capture.spec
    example = next((e for e in capture.examples if e.replayable), None)
    return {
        "version": nb2container.__version__,
        "notebook_name": capture.notebook_name,
        "notebook_sha256": capture.notebook_sha256,
        "function": spec.function,
        "signature": spec.signature,
        "python_version": frozen.python_version,
        "python_minor": ".".join(frozen.python_version.split(".")[:2]),
        "base_image": frozen.base,
        "base_custom": frozen.base_image is not None,
        "base_digest": frozen.base_digest or "",
        "tag": tag,
        "port": port,
        "max_body_bytes": openapi.body_limit(capture),
        "pins": sorted(frozen.pins, key=lambda p: p.name),
        "imports": sorted(spec.imports, key=_import_order),
        "constants": sorted(spec.constants),
        "definitions": list(spec.definitions),
        "artifacts": sorted(spec.artifacts, key=lambda a: a.name),
        "early_artifacts": sorted((a for a in spec.artifacts if a.at_definition), key=lambda a: a.name),
        "late_artifacts": sorted((a for a in spec.artifacts if not a.at_definition), key=lambda a: a.name),
        "formats": sorted({a.format for a in spec.artifacts}),
        "files": sorted(spec.files, key=lambda f: f.image_path),
        "system_packages": sorted(frozen.system_packages, key=lambda p: p.name),
        "cuda": frozen.cuda,
        "gpu_left_out": [item for item in frozen.left_out if not item.suite],
        "suites": [item for item in frozen.left_out if item.suite],
        "layout": IMAGE,
        "example_body": json.dumps(example.body if example else {}),
        "bound": sorted(spec.bound.items()),
        "prints": spec.prints,
        "secrets": list(spec.secrets),
        "name": deploy.service_name(spec.function),
    }


def _import_order(statement: str) -> tuple[bool, str, str]:
    """Standard library first, then the rest; by module name within each group."""
    module = statement.split()[1]
    return module.split(".")[0] not in sys.stdlib_module_names, module, statement


def golden_calls(capture: Capture) -> dict[str, Any]:
    """The replayable calls and the answers the notebook's code gives (tests/golden_calls.json)."""
    return {"notebook": capture.notebook_name, "function": capture.spec.function, "calls": [
        {"cell": e.cell or e.execution_count, "call": e.shown, "request": e.body,
         "expected": e.fresh_result, "stdout": e.stdout or None}
        for e in capture.examples if e.replayable and e.golden]}


def _spec(capture: Capture, frozen: FrozenEnvironment) -> dict[str, Any]:
    spec = capture.spec
    return {
        "module": "notebook_function",
        "function": spec.function,
        "signature": spec.signature,
        "parameters": [asdict(p) for p in spec.parameters],
        "request_schema": openapi.request_schema(capture),  # what the server enforces: the OpenAPI body
        "artifacts": [{"name": a.name, "type": a.type} for a in sorted(spec.artifacts, key=lambda a: a.name)],
        "is_async": spec.is_async,
        "codecs": spec.codecs,
        "bound": spec.bound,
        "prints": spec.prints,
        "python": frozen.python_version,
        "packages": frozen.packages,
        "notebook": capture.notebook_name,
        "notebook_sha256": capture.notebook_sha256,
        "nb2container": nb2container.__version__,
    }
