"""``%containerize`` without holding the kernel.

The capture runs in the kernel (the objects are there; seconds). Everything after it (freeze,
render, build, smoke test) runs in a process of its own, ``python -m nb2container.background``,
with the kernel's interpreter: the kernel hands it the options and the capture through its
stdin and gets the report back through its stdout (pipes: the capture can hold --secret
values, which never touch the disk). The process writes its progress into the run's folder
(runs.py); a thread in the kernel follows those events into the cell's live display, so the
user runs other cells meanwhile. ``BuildHandle`` is what the magic returns.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from nb2container import engines, pipeline, runs
from nb2container.errors import Nb2ContainerError
from nb2container.model import Capture
from nb2container.options import Options
from nb2container.progress import SilentProgress
from nb2container.report import BuildReport

_POLL_SECONDS = 0.25


class BuildFailed(Nb2ContainerError):
    """The background build ended without a report: nb2container's own paragraph."""


class BuildHandle:
    """A build running outside the kernel. ``.wait()`` returns what ``%containerize --wait``
    returns; ``.done``, ``.ok``, ``.report`` and ``.image`` say where it stands without waiting;
    ``.cancel()`` stops it."""

    def __init__(self, run: runs.Run, process: subprocess.Popen[bytes], progress: Any, summary: Any,
                 seen: int) -> None:
        self.run, self._process, self._progress, self._summary = run, process, progress, summary
        self._seen = seen  # the last event the display shows
        self._result: tuple[str, Any] | None = None
        self._finished = threading.Event()
        self._output = b""
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._follow, daemon=True)
        self._watcher.start()

    @property
    def id(self) -> str:
        return self.run.info.id

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def report(self) -> BuildReport | None:
        """The build's report once it ended with one (None while it runs, or after a refusal)."""
        if not self.done or self._result is None or self._result[0] != "report":
            return None
        report: BuildReport = self._result[1]
        return report

    @property
    def ok(self) -> bool | None:
        """The verdict once the build ended (None while it runs)."""
        if not self.done:
            return None
        return self.report is not None and self.report.verdict.ok

    @property
    def image(self) -> str | None:
        return self.report.image if self.report else None

    def wait(self, timeout: float | None = None) -> Any:
        """The result the blocking magic returns (a ``Containerized``); a build that ended
        without a report raises nb2container's paragraph."""
        from IPython.core.error import UsageError

        from nb2container.display import Containerized

        if not self._finished.wait(timeout):
            raise TimeoutError(f"the build {self.id} is still running after {timeout:g} s")
        assert self._result is not None
        kind, value = self._result
        if kind != "report":
            raise UsageError(value)
        return Containerized(value, [e["text"] for e in runs.events(self.run.folder) if e["kind"] == "log"])

    def cancel(self, timeout: float = 60) -> None:
        """Stop the build: its container is removed, nothing is tagged, the run says cancelled."""
        if self.done:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        if not self._finished.wait(timeout):
            os.killpg(self._process.pid, signal.SIGKILL)
            self._finished.wait(10)

    def __repr__(self) -> str:
        if not self.done:
            return (f"Building `{self.run.info.function}` in the background (run {self.id}): its steps and "
                    "verdict show above as they come. `.wait()` returns the result; `.cancel()` stops it.")
        kind, value = self._outcome()
        if kind == "report":
            return f"Build {self.id}: {'OK' if value.verdict.ok else 'FAILED'}, {value.verdict.words}."
        return f"Build {self.id} ended: {value}"

    def _outcome(self) -> tuple[str, Any]:
        return self._result or ("error", "")

    def _read_output(self) -> None:
        assert self._process.stdout is not None
        self._output = self._process.stdout.read()

    def _follow(self) -> None:
        """Events into the display until the process ends, then the verdict."""
        self._reader.join(0)
        while self._reader.is_alive():  # its answer ends when the process does: no poll's delay
            self._show_new_events()
            self._reader.join(_POLL_SECONDS)
        self._process.wait()
        self._show_new_events()
        try:
            self._result = pickle.loads(self._output)
        except Exception:  # killed before it answered
            cancelled = self._process.returncode in (-signal.SIGTERM, -signal.SIGKILL)
            message = runs.CANCELLED_MESSAGE if cancelled else (
                f"The build process stopped (exit status {self._process.returncode}) before it reported; "
                f"what it wrote is in {self.run.folder}.")
            if runs.read_info(self.run.folder).state == runs.RUNNING:
                self.run.fail(message, cancelled=cancelled)
            self._result = ("error", message)
        self._show_result()
        keep_spare()  # before `done`: the next build (an edit, then %containerize again) finds it ready
        self._finished.set()

    def _show_new_events(self) -> None:
        for event in runs.events(self.run.folder, self._seen):
            self._seen = event["id"]
            runs.replay(event, self._progress)

    def _show_result(self) -> None:
        from nb2container.display import Containerized

        kind, value = self._outcome()
        finish = getattr(self._progress, "finish", None)
        if kind == "report":
            if finish:
                finish(ok=value.verdict.ok)
            if self._summary is not None:
                result = Containerized(value, [])
                self._summary.update({"text/plain": repr(result), "text/html": result._repr_html_()}, raw=True)
        else:
            if finish:
                finish(ok=False)
            if self._summary is not None:
                self._summary.update({"text/plain": value, "text/html": _paragraph_html(value)}, raw=True)


# A build process that has done its imports (1.5 to 4 s: docker, jinja2, nbformat's jsonschema)
# and waits on its stdin for the next build of this kernel; started when a build ends.
_spare: subprocess.Popen[bytes] | None = None


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "nb2container.background"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,  # until it knows its run's log
                            start_new_session=True)  # the kernel's interrupt is not the build's


def launch() -> subprocess.Popen[bytes]:
    """The build process, before the capture: the spare one this kernel keeps ready when it has
    one, else a new one whose imports overlap the capture. It waits on its stdin."""
    global _spare
    process, _spare = _spare, None
    if process is not None and process.poll() is None:
        return process
    return _spawn()


def keep_spare() -> None:
    """Have a build process ready for this kernel's next build (the rebuild after an edit). It
    ends on its own when the kernel does: its stdin closes."""
    global _spare
    if _spare is None or _spare.poll() is not None:
        _spare = _spawn()


def start(process: subprocess.Popen[bytes], options: Options, capture: Capture, staging: Path, run: runs.Run,
          progress: Any, summary: Any) -> BuildHandle:
    """Hand the captured function to the launched build process, with the run it records into, the
    staging folder (the capture's artifacts), which it removes once it has them, and the kernel's
    environment as it is now (a spare process was started before a `%env DOCKER_HOST=...`)."""
    assert process.stdin is not None
    seen = len(runs.events(run.folder))
    try:
        process.stdin.write(pickle.dumps((run.folder, staging, dict(os.environ), options, capture)))
        process.stdin.close()
    except BrokenPipeError:
        pass  # it died at start: the handle reports its exit
    return BuildHandle(run, process, progress, summary, seen)


def abandon(process: subprocess.Popen[bytes]) -> None:
    """The capture failed: the launched process gets no capture and ends without a word."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    process.wait()


def main() -> int:
    """The build process: its run, options and capture on stdin, the report (or refusal) on stdout."""
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the answer

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        folder, staging, environment, options, capture = pickle.load(sys.stdin.buffer)  # once captured
    except EOFError:  # it could not (the kernel said why), or the kernel ended with this one spare
        return 0
    os.environ.clear()
    os.environ.update(environment)
    log = os.open(folder / "process.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (sys.stdout, sys.stderr):  # what the process prints goes to its run's log
        stream.flush()
        os.dup2(log, stream.fileno())
    os.close(log)
    run = runs.Run(folder)  # after the kernel's own events: ids go on from its last
    run.claim(os.getpid())
    result: tuple[str, Any]
    try:
        report = pipeline.run(options, runs.RecordedProgress(SilentProgress(), run), lambda _: capture)
        run.finish(report)
        result = ("report", report)
    except Nb2ContainerError as error:
        run.fail(str(error))
        result = ("error", str(error))
    except KeyboardInterrupt:
        engines.clean_up_after_interrupt(options.engine)
        run.fail(runs.CANCELLED_MESSAGE, cancelled=True)
        result = ("error", runs.CANCELLED_MESSAGE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    answer.write(pickle.dumps(result))
    answer.close()
    return 0


def _paragraph_html(text: str) -> str:
    import html

    return f"<p style='color: #b42318; font-weight: bold'>{html.escape(text)}</p>"


if __name__ == "__main__":
    sys.exit(main())
