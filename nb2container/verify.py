"""``--verify-notebook``: re-run the whole notebook inside the image's environment, with nbval.

A sibling image adds a Jupyter kernel and nbval beside the frozen environment, never into
it: they are installed with ``pip --target`` into /opt/nb2c-verify and put on ``sys.path``
*after* the image's own packages (a .pth file), so every package of the lock keeps its
version and the final image is untouched. The notebook's folder is copied into a container
of that image, nbval runs every cell and compares its outputs with the stored ones, and the
result comes back per cell (nbval's JUnit XML).
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import nbformat

from nb2container import cache, wheelhouse
from nb2container.engines import ContainerEngine
from nb2container.model import Pin, cell_label, default_base
from nb2container.notebook import loads_nb2container
from nb2container.progress import Progress
from nb2container.render import link_or_copy
from nb2container.runtime.layout import IMAGE
from nb2container.templating import environment

TOOLS = ["nbval", "ipykernel"]
_SKIPPED_DIRS = {".git", ".venv", "venv", "build", "__pycache__", "node_modules", ".ipynb_checkpoints"}
_ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")  # colours, raw or as escaped in XML
_WORK = "/work"
_RESULTS = f"{_WORK}/.nb2c-verify.xml"
_COPY = ".nb2c-verify-"  # the notebook's copy beside it, with nb2container's own cells skipped


@dataclass
class VerifiedCell:
    cell: int  # 1-based position in the notebook, as the smoke table numbers cells
    outcome: str  # passed | failed | skipped
    message: str = ""
    count: int | None = None  # its execution count in the saved notebook

    @property
    def label(self) -> str:
        return cell_label(self.cell, self.count)


@dataclass
class VerifyReport:
    notebook: str
    cells: list[VerifiedCell] = field(default_factory=list)
    exit_code: int = 0
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and all(cell.outcome != "failed" for cell in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "ok": self.ok, "exit_code": self.exit_code,
                "cells": [asdict(cell) for cell in self.cells]}

    def junit_suite(self) -> ElementTree.Element:
        suite = ElementTree.Element("testsuite", name=f"nb2container verify-notebook: {self.notebook}",
                                    tests=str(len(self.cells)),
                                    failures=str(sum(c.outcome == "failed" for c in self.cells)))
        for cell in self.cells:
            case = ElementTree.SubElement(suite, "testcase", classname=self.notebook, name=cell.label)
            if cell.outcome in ("failed", "skipped"):
                ElementTree.SubElement(case, "failure" if cell.outcome == "failed" else "skipped",
                                       message=cell.message[:500])
        return suite


def verify_notebook(
    engine: ContainerEngine, image_id: str, notebook: Path, python_version: str, platform: str,
    progress: Progress, timeout: int = 600, base: str | None = None, notebook_pins: tuple[Pin, ...] = (),
) -> VerifyReport:
    """Re-run the notebook in a sibling of the image (its tools installed with ``base``'s pip), with
    ``notebook_pins``: what the notebook's other cells import, at the kernel's versions."""
    pins = wheelhouse.resolve(TOOLS, python_version, platform, progress)
    with tempfile.TemporaryDirectory(prefix="nb2container-verify-") as folder:
        context = Path(folder)
        link_or_copy(cache.wheels(), context / "wheels", sorted({pin.wheel for pin in (*pins, *notebook_pins)}))
        (context / "requirements.lock").write_text(_lock(pins))
        (context / "notebook.lock").write_text(_lock(notebook_pins))
        (context / "Dockerfile").write_text(environment().get_template("Dockerfile.verify.j2").render(
            image=image_id, base_image=base or default_base(python_version), layout=IMAGE, work=_WORK,
            notebook_packages=bool(notebook_pins)))
        progress.step(f"Building a sibling image with a kernel and nbval, to re-run {notebook.name}")
        sibling = engine.build(context, progress, platform)
    progress.step(f"Re-running {notebook.name} inside the image's environment (nbval)")
    try:
        job = engine.run_job(
            sibling.id, ["python", "-m", "pytest", "--nbval", _COPY + notebook.name, "-p", "no:cacheprovider",
                         f"--junitxml={_RESULTS}", "-q", "--nbval-cell-timeout", str(timeout)],
            files=_folder_tar(notebook), fetch=_RESULTS, user=IMAGE.user, working_dir=_WORK,
            environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}, timeout=timeout * 4)
    finally:
        engine.remove_image(sibling.id, prune=False)  # its parent, the image itself, is not tagged yet
    report = VerifyReport(notebook.name, exit_code=job.exit_code, log_tail="\n".join(job.logs.splitlines()[-25:]))
    code_cells = [(n, cell.get("execution_count")) for n, cell in
                  enumerate(nbformat.read(notebook, as_version=4).cells, start=1) if cell.cell_type == "code"]
    report.cells = _cells(job.fetched, code_cells)  # None: nbval never wrote them (it crashed before a cell)
    return report


def _lock(pins: Iterable[Pin]) -> str:
    return "".join(f"{pin.name}=={pin.version} --hash=sha256:{pin.sha256}\n"
                   for pin in sorted(pins, key=lambda p: p.name))


def _folder_tar(notebook: Path) -> bytes:
    """The notebook's folder as a tar under /work, owned by the image's user, with a copy of the
    notebook whose nb2container cells (%load_ext, %containerize) nbval skips: they are not the
    notebook's work, and the image has no nb2container."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and loads_nb2container(cell.source):
            cell.metadata.setdefault("tags", []).append("nbval-skip")
    copy = nbformat.writes(nb).encode()
    buffer = io.BytesIO()
    folder = notebook.parent
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if any(part in _SKIPPED_DIRS for part in Path(info.name).parts):
                return None
            info.uid, info.gid = IMAGE.uid, IMAGE.gid
            info.uname = info.gname = ""
            return info

        tar.add(folder, arcname=_WORK.lstrip("/"), filter=owned)
        info = owned(tarfile.TarInfo(f"{_WORK.lstrip('/')}/{_COPY}{notebook.name}"))
        assert info is not None
        info.size, info.mode = len(copy), 0o644
        tar.addfile(info, io.BytesIO(copy))
    return buffer.getvalue()


def _cells(results: bytes | None, code_cells: list[tuple[int, int | None]]) -> list[VerifiedCell]:
    """nbval's JUnit results; its "Cell k" counts code cells from 0."""
    if results is None:
        return []
    root = ElementTree.fromstring(results)
    cells = []
    for case in root.iter("testcase"):
        match = re.search(r"Cell (\d+)", case.get("name", ""))
        index = int(match.group(1)) if match else -1
        number, count = code_cells[index] if 0 <= index < len(code_cells) else (0, None)
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            text = _ANSI.sub("", (failure.get("message") or "") + "\n" + (failure.text or ""))
            text = re.sub(r"Cell \d+: ", "", text.replace("Notebook cell execution failed", ""))
            cells.append(VerifiedCell(number, "failed", _first_lines(text), count))
        elif skipped is not None:
            cells.append(VerifiedCell(number, "skipped", skipped.get("message", ""), count))
        else:
            cells.append(VerifiedCell(number, "passed", count=count))
    return cells


def _first_lines(text: str, count: int = 12) -> str:
    return "\n".join(line for line in text.strip().splitlines()[:count])


def describe(report: VerifyReport) -> str:
    """Per cell, for the terminal."""
    lines = [f"verify-notebook: {report.notebook} re-run inside the image's environment (nbval)"]
    for cell in report.cells:
        mark = {"passed": "ok", "failed": "FAILED", "skipped": "skipped"}[cell.outcome]
        lines.append(f"  {cell.label}: {mark}")
        if cell.outcome == "failed":
            lines += [f"      {line}" for line in cell.message.splitlines()]
    passed = sum(c.outcome == "passed" for c in report.cells)
    failed = sum(c.outcome == "failed" for c in report.cells)
    lines.append(f"  {passed} cell(s) passed, {failed} failed" + (
        "" if report.cells or report.ok else f"; nbval exited {report.exit_code}:\n{report.log_tail}"))
    return "\n".join(lines)
