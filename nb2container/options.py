"""The one configuration surface: filled from CLI flags (and later magic arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    notebook: Path
    function: str | None = None
    tag: str | None = None
    output: Path | None = None
    report: Path | None = None
    port: int = 8000
    kernel: str | None = None
    timeout: int = 600
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9
    platform: str = "linux/amd64"
    max_artifact_mb: int = 2048  # per artifact or data file
    debug: bool = False
