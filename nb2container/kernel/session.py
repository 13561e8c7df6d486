"""The CLI's two steps in its fresh kernel: before the notebook's cells, record calls of the
requested function; after them, capture it. Both read the one request (``request.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nb2container.kernel import recheck
from nb2container.kernel.capture import capture_to_file
from nb2container.kernel.recorder import CallRecorder
from nb2container.kernel.request import CaptureRequest


def start(shell: Any) -> None:
    CallRecorder(shell, CaptureRequest.from_environment().function).install()


def finish(shell: Any) -> None:
    request = CaptureRequest.from_environment()
    capture_to_file(shell.user_ns, request)
    written = Path(request.out_dir) / "capture.json"
    raw = json.loads(written.read_text())
    if not raw.get("refusal"):  # each call made once more: does the function answer the same?
        recheck.calls_now(shell, request.function, raw, key="again")
        written.write_text(json.dumps(raw))
