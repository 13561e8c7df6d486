"""What the host asks the kernel to capture: one typed request, crossing into the kernel as JSON.

The CLI writes it beside the capture and starts its fresh kernel with the file's path in
``NB2C_CAPTURE_REQUEST``; the code it runs there is fixed (``kernel/session.py``), so no option
travels as formatted source. The magic, already in the kernel, passes the request directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENV = "NB2C_CAPTURE_REQUEST"  # the request file's path, in the CLI's kernel
CAPTURING_ENV = "NB2C_CAPTURING"  # set in that kernel: a %containerize cell there must not build again


@dataclass(frozen=True)
class CaptureRequest:
    function: str
    out_dir: str  # the kernel writes capture.json, artifacts/ and files/ here
    max_artifact_bytes: int = 2 * 1024**3
    examples: tuple[Any, ...] = ()  # request bodies (--example), called in the notebook's state
    bind: tuple[str, ...] = ()  # parameters the server supplies from the notebook's globals
    no_bind: bool = False

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)))
        return path

    @classmethod
    def read(cls, path: Path) -> CaptureRequest:
        fields = json.loads(path.read_text())
        return cls(**{**fields, "examples": tuple(fields["examples"]), "bind": tuple(fields["bind"])})

    @classmethod
    def from_environment(cls) -> CaptureRequest:
        return cls.read(Path(os.environ[ENV]))
