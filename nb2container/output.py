"""The build folder on disk: which folders may be one, and replacing only what nb2container wrote.

A build is rendered into a staging folder beside the target first; only when it is complete
are the files the previous build wrote (recorded in the marker) replaced by the new ones.
Everything else in the folder (a user's notes, results, extra code) stays, byte for byte,
and a render that fails leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nb2container
from nb2container.errors import UsageError

MARKER = ".nb2container"  # JSON: the version that wrote the folder and every file it wrote


@dataclass(frozen=True)
class Written:
    folder: Path
    kept: tuple[str, ...]  # files nb2container did not write, left as they were


def check(folder: Path, notebook: Path | None) -> None:
    """Refuse, before any slow work, a folder that must never be a build folder."""
    target = folder.resolve()
    why = _forbidden(target, notebook)
    if why:
        raise UsageError(
            f"{folder} cannot be the build folder: it is {why}, and nb2container replaces what it wrote "
            "in a build folder on every build. Give a folder of its own with --output, for example "
            "--output build/my-model.")
    if target.exists() and not target.is_dir():
        raise UsageError(f"--output {folder} is a file, not a folder. Give a folder with --output.")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).exists():
        raise UsageError(
            f"{folder} already exists and was not made by nb2container; it is left untouched. "
            "Choose another folder with --output, or empty this one.")


def _forbidden(target: Path, notebook: Path | None) -> str | None:
    if target == Path(target.anchor):
        return "the root of the file system"
    if target == Path.cwd().resolve():
        return "the current directory"
    if notebook is not None and target == notebook.resolve().parent:
        return f"the folder of the notebook {notebook.name}"
    if target in _home_directories():
        return "a home directory"
    return None


def _home_directories() -> set[Path]:
    homes = {Path.home().resolve()}
    with contextlib.suppress(OSError):
        homes |= {Path(user.pw_dir).resolve() for user in pwd.getpwall() if user.pw_dir.startswith("/home/")}
    return homes


def recorded(folder: Path) -> tuple[str, ...] | None:
    """The files the last build wrote into ``folder``; None for a marker of before they were recorded."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    return tuple(files) if isinstance(files, list) else None


def replace(folder: Path, notebook: Path | None, fill: Callable[[Path], None]) -> Written:
    """Render with ``fill`` into a staging folder, then swap what the last build wrote for it."""
    check(folder, notebook)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.nb2c-", dir=folder.parent))
    try:
        fill(staging)
        new = sorted(_files(staging))
        before = recorded(folder)
        existing = set(_files(folder)) - {MARKER}
        # A marker without a file list (an older nb2container): what this build writes is its.
        ours = set(before) if before is not None else existing & set(new)
        clashes = sorted((existing - ours) & set(new))
        if clashes:
            raise UsageError(
                f"{folder} holds {', '.join(clashes[:5])}, which nb2container did not write and would "
                "now overwrite. Move or rename them, or choose another folder with --output.")
        for name in sorted(ours & existing):
            (folder / name).unlink()
        _remove_empty_dirs(folder, ours)
        for directory in staging.rglob("*"):  # empty ones too: the Dockerfile copies wheels/ even empty
            if directory.is_dir():
                (folder / directory.relative_to(staging)).mkdir(parents=True, exist_ok=True)
        for name in new:
            os.replace(staging / name, folder / name)
        (folder / MARKER).write_text(json.dumps(
            {"nb2container": nb2container.__version__, "files": new}, indent=1) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kept = tuple(sorted(existing - ours))
    return Written(folder, kept)


def _files(folder: Path) -> list[str]:
    return [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() or path.is_symlink()]


def _remove_empty_dirs(folder: Path, removed: set[str]) -> None:
    """The folders that held only files of the last build, deepest first."""
    parents = {parent for name in removed for parent in Path(name).parents if parent != Path(".")}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds a user's file
            (folder / parent).rmdir()
