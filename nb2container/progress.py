"""How stages report progress, so the CLI and the magic can each show it their own way."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    def step(self, message: str) -> None: ...  # a new stage or step: always shown
    def detail(self, message: str) -> None: ...  # a sub-step: shown compactly
    def warn(self, message: str) -> None: ...
    def log(self, line: str) -> None: ...  # raw log (build output): kept in ``lines``, shown on demand


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


class SilentProgress:
    def step(self, message: str) -> None: ...
    def detail(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def log(self, line: str) -> None: ...
