"""The build folder on disk: which folders may be one, and replacing only what nb2container wrote.

A build is rendered into a staging folder inside the target first; only when it is complete
are the files the previous build wrote (recorded in the marker) swapped for the new ones, all
or nothing. Everything else in the folder (a user's notes, results, extra code) stays, byte for
byte, and a render or a swap that fails leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
    if target.is_dir() and not (target / MARKER).exists() and \
            any(not _ours_in_passing(path.relative_to(target)) for path in target.iterdir()):
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
    """Render with ``fill`` into a staging folder, then swap what the last build wrote for it, all
    or nothing: the last build's files are moved aside (not deleted) and come back on any failure
    (cross-device link, a file that cannot be moved, a full disk, Ctrl-C, SIGTERM); they are removed
    only once the new build is in place. Staging and the files moved aside live inside the resolved
    folder (a symlink followed), so every move is a rename on one file system. A lock refuses a
    second build into the same folder while one is writing it."""
    check(folder, notebook)
    target = folder.resolve()
    target.mkdir(parents=True, exist_ok=True)
    with _locked(folder, target), _signals_interrupt():
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=target))
        aside = Path(tempfile.mkdtemp(prefix=_ASIDE, dir=target))
        try:
            fill(staging)
            new = sorted(_files(staging))
            before = recorded(target)
            existing = set(_files(target)) - {MARKER}
            # A marker without a file list (an older nb2container): what this build writes is its.
            ours = set(before) if before is not None else existing & set(new)
            clashes = sorted((existing - ours) & set(new))
            if clashes:
                raise UsageError(
                    f"{folder} holds {', '.join(clashes[:5])}, which nb2container did not write and would "
                    "now overwrite. Move or rename them, or choose another folder with --output.")
            _swap(target, staging, aside, sorted(ours & existing), new)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(aside, ignore_errors=True)
    _remove_empty_dirs(target, ours - set(new))
    return Written(folder, tuple(sorted(existing - ours)))


_STAGING, _ASIDE, _LOCK = ".nb2c-staging-", ".nb2c-previous-", ".nb2container.lock"


def _swap(target: Path, staging: Path, aside: Path, old: list[str], new: list[str]) -> None:
    """Old files aside, new ones in, the marker last; any failure puts the old ones back."""
    moved: list[str] = []
    placed: list[str] = []
    marker = target / MARKER
    previous_marker = marker.read_bytes() if marker.exists() else None
    try:
        for name in old:
            (aside / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(target / name, aside / name)
            moved.append(name)
        for name in new:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target / name)
            placed.append(name)
        for directory in staging.rglob("*"):  # empty ones too: the Dockerfile copies wheels/ even empty
            if directory.is_dir():
                (target / directory.relative_to(staging)).mkdir(parents=True, exist_ok=True)
        _write_atomically(marker, json.dumps({"nb2container": nb2container.__version__, "files": new},
                                             indent=1) + "\n")
    except BaseException as exc:
        for name in placed:
            with contextlib.suppress(OSError):
                (target / name).unlink()
        for name in moved:
            os.replace(aside / name, target / name)
        if previous_marker is not None:
            _write_atomically(marker, previous_marker.decode())
        if isinstance(exc, OSError):
            raise UsageError(
                f"The new build could not replace the last one in {target} ({exc.strerror or exc}: "
                f"{exc.filename or ''}); the last build is left as it was. Make its files writable and "
                "movable (chattr -i, chmod), or choose another folder with --output.") from None
        raise


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(folder: Path, target: Path) -> Iterator[None]:
    """One build writes a folder at a time; the second is refused in one sentence naming the first."""
    path = target / _LOCK
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"Another build is writing {folder} right now ({holder}); wait for it to "
                             "finish, or build into another folder with --output.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"nb2container pid {os.getpid()}, since {time.strftime('%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # no trace of the lock between builds


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM while the folder is swapped raises, as Ctrl-C does, so the swap can undo itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _files(folder: Path) -> list[str]:
    """The files below ``folder``, without nb2container's own staging, set-aside and lock files."""
    return [str(path.relative_to(folder)) for path in folder.rglob("*")
            if (path.is_file() or path.is_symlink()) and not _ours_in_passing(path.relative_to(folder))]


def _ours_in_passing(relative: Path) -> bool:
    return relative.parts[0].startswith((_STAGING, _ASIDE)) or relative.name in (_LOCK, MARKER + ".new")


def _remove_empty_dirs(folder: Path, removed: set[str]) -> None:
    """The folders that held only files of the last build, deepest first."""
    parents = {parent for name in removed for parent in Path(name).parents if parent != Path(".")}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds a user's file
            (folder / parent).rmdir()
