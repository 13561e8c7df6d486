"""Where the host keeps what builds download (``NB2C_CACHE_DIR``, default ~/.cache/nb2container):
wheels, and the Debian packages the image installs offline; and the frozen environments a rebuild
reuses (reuse.py). Kept between builds."""

from __future__ import annotations

import os
from pathlib import Path


def folder(name: str) -> Path:
    root = os.environ.get("NB2C_CACHE_DIR") or Path.home() / ".cache" / "nb2container"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheels() -> Path:
    return folder("wheels")


def debs() -> Path:
    return folder("debs")
