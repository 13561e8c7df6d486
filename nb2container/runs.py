"""The store of builds: every build (the CLI's, the magic's) writes its progress events, its log
and its report into a run folder of its own, so that any front end can list the builds a user
made, follow one as it runs, or read it again later.

A run folder holds:

- ``run.json``: what the run is (id, notebook, function, who started it, when, its process) and,
  once it ended, how (state, verdict, image, size, build folder);
- ``events.jsonl``: one JSON object a line, ``{"id": N, "time": ..., "kind": ..., "text": ...}``,
  kinds ``step``, ``detail``, ``warning``, ``log`` and a last ``verdict`` (or ``error``); ids
  count from 1, so a reader resumes after the last id it saw;
- ``report.json``: the build report, as ``--report`` writes it.

The store is under Jupyter's data directory (``jupyter --data-dir``)/nb2container/runs, or
NB2CONTAINER_RUNS_DIR. The oldest runs are removed past KEEP runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nb2container.progress import Progress, TerminalProgress
from nb2container.report import BuildReport
from nb2container.secret_scan import scrubbed

KEEP = 100  # runs kept; the oldest finished ones go first
RUNS_DIR_ENV = "NB2CONTAINER_RUNS_DIR"
RUNNING, OK, FAILED, CANCELLED = "running", "ok", "failed", "cancelled"
CANCELLED_MESSAGE = "The build was cancelled: no container is left, and nothing was tagged."


def root(configured: Path | None = None) -> Path:
    """``--runs-dir`` (or ``runs_dir`` in the configuration), NB2CONTAINER_RUNS_DIR, else Jupyter's data directory."""
    if configured:
        return configured.expanduser()
    if os.environ.get(RUNS_DIR_ENV):
        return Path(os.environ[RUNS_DIR_ENV]).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "nb2container" / "runs"


@dataclass
class RunInfo:
    """What ``run.json`` says of a run."""

    id: str
    notebook: str
    function: str
    source: str  # "cli" or "magic"
    started: str  # ISO 8601, UTC
    pid: int  # the process that builds
    state: str = RUNNING
    verdict: str = ""  # the verdict's words, or the refusal's first sentence
    image: str | None = None
    size_bytes: int | None = None
    folder: str | None = None
    ended: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the run is still building: its state says so and its process lives."""
        if self.state != RUNNING:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True


class Run:
    """One run folder, written by the process that builds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.info = read_info(folder)
        self._next_id = 1 + sum(1 for _ in _lines(folder / "events.jsonl"))

    def event(self, kind: str, text: str, **extra: Any) -> None:
        record = {"id": self._next_id, "time": _now(), "kind": kind, "text": text, **extra}
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        self._next_id += 1

    def finish(self, report: BuildReport) -> None:
        """The verdict's event, the report, and run.json's ending."""
        verdict = report.verdict
        if report.hidden:  # secret-like arguments the build learned of late: out of what it wrote before
            self._scrub(report.hidden)
        report.write(self.folder / "report.json")
        words = f"{verdict.words} {Path(report.notebook).name}" if verdict.ok else "; ".join(verdict.reasons)
        self._end(OK if verdict.ok else FAILED, scrubbed(words, report.hidden), image=report.image,
                  size_bytes=report.size_bytes, function=report.function or self.info.function,
                  # absolute: readers (`runs`, the lab panel) run in other folders than the build did
                  folder=str(Path(report.folder).resolve()) if report.folder else None)
        self.event("verdict", self.info.verdict, ok=verdict.ok, image=report.image, size_bytes=report.size_bytes)

    def fail(self, message: str, cancelled: bool = False) -> None:
        """A build refused or stopped before a report: nb2container's own paragraph."""
        self._end(CANCELLED if cancelled else FAILED, message)
        self.event("error", message, cancelled=cancelled)

    def claim(self, pid: int) -> None:
        """The process that builds from here on (the magic's build process, after the kernel's capture)."""
        self.info.pid = pid
        _write_json(self.folder / "run.json", asdict(self.info))

    def _scrub(self, hidden: tuple[str, ...]) -> None:
        records = [json.loads(line) for line in _lines(self.folder / "events.jsonl")]
        for record in records:
            record["text"] = scrubbed(str(record.get("text", "")), hidden)
        _write_text(self.folder / "events.jsonl", "".join(json.dumps(record) + "\n" for record in records))

    def _end(self, state: str, verdict: str, **facts: Any) -> None:
        self.info = RunInfo(**{**asdict(self.info), **facts, "state": state, "verdict": verdict, "ended": _now()})
        _write_json(self.folder / "run.json", asdict(self.info))


def start(notebook: Path | None, function: str, source: str, pid: int | None = None,
          store: Path | None = None) -> Run:
    """A new run folder; old runs past KEEP are removed first."""
    store = root(store)
    store.mkdir(parents=True, exist_ok=True)
    prune(store)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{function}-{secrets.token_hex(2)}"
    folder = store / run_id
    folder.mkdir(mode=0o700)
    info = RunInfo(run_id, str(notebook) if notebook else "", function, source, _now(), pid or os.getpid())
    _write_json(folder / "run.json", asdict(info))
    return Run(folder)


def listing(store: Path | None = None) -> list[RunInfo]:
    """Every run, newest first."""
    store = root(store)
    if not store.is_dir():
        return []
    infos = []
    for folder in store.iterdir():
        with contextlib.suppress(OSError, ValueError, TypeError):
            infos.append(read_info(folder))
    return sorted(infos, key=lambda info: info.started, reverse=True)


def find(run_id: str, store: Path | None = None) -> Path:
    """The folder of a run, by its id or the start of one."""
    from nb2container.errors import UsageError

    store = root(store)
    matches = [folder for folder in (store.iterdir() if store.is_dir() else ()) if folder.name.startswith(run_id)]
    if len(matches) != 1:
        known = ", ".join(info.id for info in listing(store)[:5]) or "none yet"
        what = "no run" if not matches else f"{len(matches)} runs"
        raise UsageError(f"There is {what} whose id starts with `{run_id}` in {store}. "
                         f"`nb2container runs` lists them (the newest: {known}).")
    return matches[0]


def events(folder: Path, after: int = 0) -> list[dict[str, Any]]:
    """The run's events with ids above ``after`` (0: all of them)."""
    found = []
    for line in _lines(folder / "events.jsonl"):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("id", 0) > after:
                found.append(record)
    return found


def running(notebook: Path | None, function: str, store: Path | None = None) -> RunInfo | None:
    """A live build of this notebook's function, if there is one."""
    wanted = str(notebook) if notebook else ""
    return next((info for info in listing(store)
                 if info.notebook == wanted and info.function == function and info.alive), None)


def prune(store: Path, keep: int = KEEP) -> None:
    """Remove the oldest finished runs past ``keep`` (a live one is never removed)."""
    finished = [info for info in listing(store) if not info.alive]
    for info in finished[max(keep - 1, 0):]:
        shutil.rmtree(store / info.id, ignore_errors=True)


def read_info(folder: Path) -> RunInfo:
    data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    known = {f.name for f in fields(RunInfo)}
    return RunInfo(**{key: value for key, value in data.items() if key in known})


class RecordedProgress:
    """Passes everything on to ``inner`` and writes it into the run's events."""

    def __init__(self, inner: Progress, run: Run) -> None:
        self.inner, self.run = inner, run

    def step(self, message: str) -> None:
        self.run.event("step", message)
        self.inner.step(message)

    def detail(self, message: str) -> None:
        self.run.event("detail", message)
        self.inner.detail(message)

    def warn(self, message: str) -> None:
        self.run.event("warning", message)
        self.inner.warn(message)

    def log(self, line: str) -> None:
        self.run.event("log", line)
        self.inner.log(line)

    def reused(self, message: str) -> None:
        self.run.event("reused", message)
        self.inner.reused(message)


@contextlib.contextmanager
def recorded(notebook: Path | None, function: str, source: str, inner: Progress,
             store: Path | None = None, folder: Path | None = None) -> Iterator[RecordedProgress]:
    """A build recorded as a run (in ``folder`` when the one who started it made the run). The
    caller ends it with ``progress.run.finish(report)``; an error or an interruption ends it here."""
    if folder is not None:
        run = Run(folder)
        run.claim(os.getpid())
    else:
        run = start(notebook, function, source, store=store)
    progress = RecordedProgress(inner, run)
    try:
        yield progress
    except KeyboardInterrupt:
        run.fail(CANCELLED_MESSAGE, cancelled=True)
        raise
    except Exception as exc:
        run.fail(str(exc))
        raise


def table(infos: list[RunInfo], store: Path | None = None) -> str:
    """``nb2container runs``: one line a run."""
    if not infos:
        return f"No builds recorded yet in {root(store)}."
    rows = [("ID", "NOTEBOOK", "FUNCTION", "STARTED", "STATE", "IMAGE", "SIZE")]
    for info in infos:
        state = info.state if info.state != RUNNING or info.alive else "stopped"
        size = f"{info.size_bytes / 1e6:,.0f} MB" if info.size_bytes else ""
        rows.append((info.id, Path(info.notebook).name or "(live kernel)", info.function,
                     info.started.replace("T", " ")[:19], state, info.image or "", size))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def replay(event: dict[str, Any], progress: Progress) -> None:
    """One recorded event, shown again through a Progress (the magic's display, the terminal)."""
    kind, text = event.get("kind"), str(event.get("text", ""))
    if kind == "step":
        progress.step(text)
    elif kind == "detail":
        progress.detail(text)
    elif kind == "warning":
        progress.warn(text)
    elif kind == "log":
        progress.log(text)
    elif kind == "reused":
        progress.reused(text)


def describe(folder: Path) -> str:
    """``nb2container runs show ID``: what the run is, its steps and warnings, and how it ended."""
    info = read_info(folder)
    lines = [f"run {info.id}: {info.function} from {info.notebook or 'a live kernel'} ({info.source}), "
             f"started {info.started}" + (f", ended {info.ended}" if info.ended else "")]
    shown = io.StringIO()
    terminal = TerminalProgress(shown)  # as the CLI printed them (the log only with -v)
    for record in events(folder):
        replay(record, terminal)
    if shown.getvalue():
        lines.append(shown.getvalue().rstrip("\n"))
    state = info.state if info.state != RUNNING or info.alive else "stopped (its process is gone)"
    lines.append(f"\n{state}: {info.verdict}" if info.verdict else f"\n{state}")
    for name, value in (("image", info.image), ("size", f"{info.size_bytes / 1e6:,.0f} MB" if info.size_bytes
                                                         else None),
                        ("build folder", info.folder), ("report", folder / "report.json"),
                        ("log", folder / "events.jsonl")):
        if value and (not isinstance(value, Path) or value.exists()):
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _lines(path: Path) -> Iterator[str]:
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as stream:
        yield from (line for line in stream if line.strip())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
