"""Files the serving function reads at call time, found two ways, and copied for the image.

- Observed: an audit hook (``sys.addaudithook``) sees every ``open`` while a recorded call of
  the function runs, so a model loaded with ``joblib.load(path)`` or a vocabulary read with
  ``open`` is caught whatever library opened it.
- Named: string literals in the captured code and constants that name an existing file, for
  functions the notebook never calls.

Each file keeps the path the code wrote: an absolute path lands at the same path in the
image; a relative one lands under the image's working directory, where the server runs.
Standard library only: this runs inside the user's kernel.
"""

from __future__ import annotations

import ast
import os
import posixpath
import shutil
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nb2container.kernel.pickles import UnreadableData, modules_in_file
from nb2container.kernel.refusal import Refusal
from nb2container.runtime.layout import IMAGE

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_MAX_PATH_CHARS = 1024


@dataclass
class FileUse:
    written: str  # the path as the code gave it
    absolute: str  # where it was in the kernel's file system
    writes: bool
    execution_count: int | None = None


class FileWatch:
    """Records the files opened while ``active`` (inside a recorded call).

    Audit hooks cannot be removed, so one hook is installed and stays cheap when inactive.
    """

    def __init__(self) -> None:
        self.uses: dict[tuple[str, bool], FileUse] = {}
        self._depth = threading.local()
        sys.addaudithook(self._hook)

    def __enter__(self) -> FileWatch:
        self._depth.value = getattr(self._depth, "value", 0) + 1
        return self

    def __exit__(self, *_: Any) -> None:
        self._depth.value -= 1

    def stamp(self, execution_count: int | None) -> None:
        for use in self.uses.values():
            if use.execution_count is None:
                use.execution_count = execution_count

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(use) for use in self.uses.values()]

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not getattr(self._depth, "value", 0):
            return
        path, mode, flags = (*args, None, None, None)[:3]
        if isinstance(path, int) or path is None:
            return
        written = os.fsdecode(path)
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            (flags or 0) & _WRITE_FLAGS)
        absolute = os.path.abspath(written)
        if not _is_own_file(absolute):
            self.uses.setdefault((written, writes), FileUse(written, absolute, writes))


def image_path(written: str) -> str:
    """Where a file the code names by ``written`` must be inside the image."""
    if os.path.isabs(written):
        return posixpath.normpath(written)
    return posixpath.normpath(posixpath.join(IMAGE.workdir, written.replace(os.sep, "/")))


def named_files(sources: list[str], constants: dict[str, Any]) -> list[str]:
    """String literals of the captured code and constants that name an existing file."""
    strings: list[str] = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.append(node.value)
    for value in constants.values():
        strings.extend(_strings_in(value))
    return [s for s in dict.fromkeys(strings) if _looks_like_file(s)]


def collect(
    observed: list[dict[str, Any]], named: list[str], folder: Path, max_bytes: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy the files the function reads into ``folder`` under their image paths.

    Returns the files (as written, image path, size, how found: "read" during the call
    run as ``execution_count`` or "named" in the code; the modules a pickled file needs) and
    warnings for writes.
    """
    files: dict[str, dict[str, Any]] = {}
    warnings = []
    for use in observed:
        if use["writes"]:
            warnings.append(
                f"when called (at In [{use['execution_count']}]), the function writes to "
                f"`{use['written']}`; in the image the server runs as a non-root user on a "
                "read-only application tree, so write under /tmp instead, or drop the write."
            )
        elif os.path.isfile(use["absolute"]):
            files.setdefault(image_path(use["written"]), {
                "path": use["written"], "source": use["absolute"], "found": "read",
                "execution_count": use["execution_count"],
            })
    for written in named:
        files.setdefault(image_path(written), {
            "path": written, "source": os.path.abspath(written), "found": "named",
            "execution_count": None,
        })
    result = []
    for target, entry in sorted(files.items()):
        size = os.path.getsize(entry["source"])
        if size > max_bytes:
            raise Refusal(
                "artifact_too_large",
                f"The function reads the file `{entry['path']}` ({size:,} bytes), over the limit of "
                f"{max_bytes:,} bytes per artifact. Shrink it, or raise the limit "
                "(--max-artifact-mb) if the image may be this large.",
                variable=entry["path"], size_bytes=size,
            )
        destination = folder / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry["source"], destination)
        try:
            modules = modules_in_file(destination)
        except UnreadableData as exc:
            modules = set()
            warnings.append(f"the data file {entry['path']} looks like a pickle or joblib file, and nb2container "
                            f"could not read which packages loading it needs ({exc}); if the function loads it, "
                            "the image may lack one of them. Check that it loads in the notebook; the smoke test "
                            "shows whether it loads in the image.")
        result.append({"path": entry["path"], "image_path": target, "size_bytes": size,
                       "found": entry["found"], "execution_count": entry["execution_count"],
                       "modules": sorted(modules)})
    return result, warnings


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.items() for part in item for s in _strings_in(part)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for item in value for s in _strings_in(item)]
    return []


def _looks_like_file(text: str) -> bool:
    if not text or len(text) > _MAX_PATH_CHARS or "\n" in text or "\0" in text:
        return False
    try:
        return os.path.isfile(text) and not _is_own_file(os.path.abspath(text))
    except (OSError, ValueError):
        return False


def _is_own_file(absolute: str) -> bool:
    """The interpreter's, its packages' and the system's files are not the notebook's data."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev"}
    prefixes.update(p for p in sys.path if p and "-packages" in p)
    return any(absolute == p or absolute.startswith(p.rstrip("/") + "/") for p in prefixes)
