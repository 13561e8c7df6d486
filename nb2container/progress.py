"""How stages report progress, so the CLI and the magic can each show it their own way."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    def step(self, message: str) -> None: ...  # a new stage or step: always shown
    def detail(self, message: str) -> None: ...  # a sub-step: shown compactly
    def warn(self, message: str) -> None: ...
    def log(self, line: str) -> None: ...  # raw log (build output): kept in ``lines``, shown on demand
    def reused(self, message: str) -> None: ...  # what this step took from an earlier build: kept with it


class TerminalProgress:
    """Steps and warnings on stderr; raw build log lines only with ``verbose``."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream, self.verbose = stream or sys.stderr, verbose  # stderr as it is now, not at import
        self.lines: list[str] = []

    def step(self, message: str) -> None:
        print(f"==> {message}", file=self.stream, flush=True)

    def detail(self, message: str) -> None:
        print(f"    {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream, flush=True)

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self.verbose:
            print(f"    | {line}", file=self.stream, flush=True)

    def reused(self, message: str) -> None:
        print(f"    reused {message}", file=self.stream, flush=True)


class WarningsKept:
    """Passes everything on to ``inner`` and keeps each warning: every warning a build prints is in
    its report's ``warnings`` too (the kernel's fallback, the base image's, the stale message...)."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.warnings: list[str] = []

    def step(self, message: str) -> None:
        self.inner.step(message)

    def detail(self, message: str) -> None:
        self.inner.detail(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.inner.warn(message)

    def log(self, line: str) -> None:
        self.inner.log(line)

    def reused(self, message: str) -> None:
        self.inner.reused(message)


class SilentProgress:
    def step(self, message: str) -> None: ...
    def detail(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def log(self, line: str) -> None: ...
    def reused(self, message: str) -> None: ...
