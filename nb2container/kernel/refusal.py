"""What cannot travel into the image, raised inside the kernel and reported by the host."""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """The message names the culprit and what to do; ``kind`` and ``details`` are for tests and reports."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind, self.details = kind, details
