"""The CLI's two steps in its fresh kernel: before the notebook's cells, record calls of the
requested function; after them, capture it. Both read the one request (``request.py``)."""

from __future__ import annotations

from typing import Any

from nb2container.kernel.capture import capture_to_file
from nb2container.kernel.recorder import CallRecorder
from nb2container.kernel.request import CaptureRequest


def start(shell: Any) -> None:
    CallRecorder(shell, CaptureRequest.from_environment().function).install()


def finish(shell: Any) -> None:
    capture_to_file(shell.user_ns, CaptureRequest.from_environment())
