"""The build's report: a JSON document for machines and a table for people."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2container.model import SmokeCase, SmokeReport


@dataclass
class BuildReport:
    notebook: str
    function: str
    image: str | None
    image_id: str | None
    size_bytes: int | None
    python: str
    packages: dict[str, str]
    folder: str | None
    smoke: SmokeReport | None
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # the notebook objects shipped
    files: list[dict[str, Any]] = field(default_factory=list)  # data files read at call time
    warnings: list[str] = field(default_factory=list)
    interface: dict[str, Any] = field(default_factory=dict)  # codecs, bound parameters, prints

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "function": self.function,
            "image": self.image,
            "image_id": self.image_id,
            "size_bytes": self.size_bytes,
            "python": self.python,
            "packages": self.packages,
            "build_folder": self.folder,
            "artifacts": self.artifacts,
            "files": self.files,
            "warnings": self.warnings,
            "interface": self.interface,
            "smoke": self.smoke.to_dict() if self.smoke else None,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def smoke_table(report: SmokeReport) -> str:
    """call | notebook output | container output | verdict, fitted to the terminal."""
    rows = [("cell", "call", "notebook", "container", "verdict")]
    for case in report.cases:
        verdict = "skipped" if case.skipped else ("match" if case.passed else "MISMATCH")
        rows.append((where_label(case), case.call, shown_value(case.expected, case.expected_stdout),
                     shown_value(case.actual, case.actual_stdout), verdict))
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    widths[1] = max(10, min(widths[1], width - sum(widths) + widths[1] - 12))
    lines = []
    for n, row in enumerate(rows):
        cells = [_fit(value, widths[i]) for i, value in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for case in report.cases:
        if case.difference and not case.passed:
            lines.append(f"cell {where_label(case)}: {case.call}: {case.difference}")
        if case.note:
            lines.append(f"note, cell {where_label(case)}: {case.note}")
    summary = f"{report.passed} passed, {report.failed} failed"
    if report.skipped:
        summary += f", {report.skipped} skipped"
    lines.append(f"health: {'ok' if report.health else 'FAILED'}; calls: {summary}")
    return "\n".join(lines)


def short_value(value: Any, limit: int | None = None) -> str:
    text = "-" if value is None else json.dumps(value, default=str)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def shown_value(result: Any, stdout: str | None, limit: int | None = None) -> str:
    """The result, or for a function that prints and returns nothing, what it printed."""
    if result is None and stdout:
        return short_value(f"printed: {' | '.join(stdout.strip().splitlines())}", limit)
    return short_value(result, limit)


def where_label(case: SmokeCase) -> str:
    """The notebook's cell number, else the execution count as Jupyter shows it ([n])."""
    if case.cell:
        return str(case.cell)
    return f"[{case.execution_count}]" if case.execution_count else "example"


def cuda_summary(packages: dict[str, str]) -> str:
    """CUDA as the lock carries it (NVIDIA's pip wheels), or that the image is CPU only."""
    runtime = next((f"{name} {version}" for name, version in sorted(packages.items())
                    if name.startswith("nvidia-cuda-runtime")), None)
    return f"from pip wheels ({runtime})" if runtime else "none (CPU only)"


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
