"""Replacing a build folder is all or nothing (issue 25): whatever fails while the new build is
swapped in (a cross-device target, a file that cannot be moved, Ctrl-C or SIGTERM at any step),
the last build stays byte for byte, the user's files too, and no staging folder is left; a
second build into a folder being written is refused, naming the first."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nb2container import output
from nb2container.errors import UsageError

LAST = {"Dockerfile": "v1", "app/module.py": "v1", "wheels/a.whl": "a", "deploy/compose.yaml": "v1"}
NEW = {"Dockerfile": "v2", "app/module.py": "v2", "wheels/b.whl": "b", "deploy/compose.yaml": "v2"}


def filler(files: dict[str, str]) -> Callable[[Path], None]:
    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return fill


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def last_build(folder: Path) -> dict[str, str]:
    output.replace(folder, None, filler(LAST))
    (folder / "notes.txt").write_text("the user's own")
    return digests(folder)


def test_a_symlinked_folder_on_another_file_system_is_replaced_in_place(tmp_path: Path) -> None:
    elsewhere = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    real = Path(os.path.realpath(elsewhere)) / f"nb2c-out-{os.getpid()}"
    link = tmp_path / "out"
    link.symlink_to(real, target_is_directory=True)
    try:
        last_build(link)
        output.replace(link, None, filler(NEW))
        assert (real / "Dockerfile").read_text() == "v2" and (real / "notes.txt").read_text() == "the user's own"
        assert not (real / "wheels/a.whl").exists() and link.is_symlink()
        assert sorted(p.name for p in real.iterdir()) == [".nb2container", "Dockerfile", "app", "deploy",
                                                          "notes.txt", "wheels"]
    finally:
        subprocess.run(["rm", "-rf", str(real)], check=False)


@pytest.mark.parametrize("failing_move", [1, 3, 5, 7, 8, 9])  # aside (1-4), in (5-8), the marker (9)
@pytest.mark.parametrize("failure", [PermissionError(1, "Operation not permitted", "deploy/compose.yaml"),
                                     KeyboardInterrupt()])
def test_a_failure_at_any_move_leaves_the_last_build_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_move: int, failure: BaseException) -> None:
    folder = tmp_path / "build"
    before = last_build(folder)
    moves = []
    real_replace = os.replace

    def replace(source: object, destination: object) -> None:
        moves.append(source)
        if len(moves) == failing_move:  # an immutable file (chattr +i), or Ctrl-C / SIGTERM right here
            raise failure
        real_replace(source, destination)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UsageError if isinstance(failure, OSError) else KeyboardInterrupt) as raised:
        output.replace(folder, None, filler(NEW))
    monkeypatch.setattr(os, "replace", real_replace)
    if isinstance(failure, OSError):
        assert "the last build is left as it was" in str(raised.value)
    assert digests(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == [".nb2container", "Dockerfile", "app", "deploy",
                                                        "notes.txt", "wheels"]  # no staging, no lock


def test_sigterm_while_rendering_leaves_the_last_build_and_no_staging_folder(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    before = last_build(folder)

    def slow(staging: Path) -> None:
        (staging / "Dockerfile").write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` or a CI timeout would

    with pytest.raises(KeyboardInterrupt):
        output.replace(folder, None, slow)
    assert digests(folder) == before and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_second_build_into_a_folder_being_written_is_refused_naming_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    before = last_build(folder)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from nb2container import output\n"
        "def fill(staging):\n    print('writing', flush=True); time.sleep(30)\n"
        f"output.replace(Path({str(folder)!r}), None, fill)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "writing"
        with pytest.raises(UsageError, match=rf"Another build is writing .*build right now \(nb2container pid "
                                             rf"{holder.pid}, since"):
            output.replace(folder, None, filler(NEW))
    finally:
        holder.kill()
        holder.wait()
    assert {k: v for k, v in digests(folder).items() if not k.startswith((".nb2c-", ".nb2container.lock"))} == before
    output.replace(folder, None, filler(NEW))  # the killed build left no lock that holds


def test_an_immutable_file_of_the_last_build_refuses_the_swap_and_keeps_it_all(tmp_path: Path) -> None:
    """The issue's reproduction: `chattr +i deploy/compose.yaml` cost 13 of 27 files of the last build."""
    folder = tmp_path / "build"
    before = last_build(folder)
    locked = folder / "deploy/compose.yaml"
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i needs root and a file system that supports it")
    try:
        with pytest.raises(UsageError, match="the last build is left as it was"):
            output.replace(folder, None, filler(NEW))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=False)
    assert digests(folder) == before
