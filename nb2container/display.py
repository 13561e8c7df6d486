"""What ``%containerize`` shows in a notebook: live progress, then a summary with the verdict.

Both are display bundles with ``text/html`` for Jupyter and ``text/plain`` for everything
else. Progress is one display that is updated in place (steps and layers, not a wall of
log); the full build log stays one click away in a ``<details>`` element.
"""

from __future__ import annotations

import html
import re
import time

from nb2container import lean
from nb2container.cuda import describe
from nb2container.model import Cuda, LeftOut, SmokeCase
from nb2container.report import (
    NOTHING_COMPARED,
    BuildReport,
    short_value,
    shown_expected,
    shown_value,
    smoke_table,
    where_label,
)
from nb2container.secret_scan import scrubbed

_REFRESH_SECONDS = 0.5
_FONT = "font-family: var(--jp-code-font-family, monospace); font-size: 12px; line-height: 1.5"


class NotebookProgress:
    """The Progress protocol as one live display in the notebook."""

    def __init__(self) -> None:
        from IPython.display import display

        self.steps: list[str] = []
        self.current_detail = ""
        self.warnings: list[str] = []
        self.lines: list[str] = []
        self.outcome: bool | None = None
        self._shown = 0.0
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def step(self, message: str) -> None:
        self.steps.append(message)
        self.current_detail = ""
        self._refresh(force=True)

    def detail(self, message: str) -> None:
        self.current_detail = message
        self._refresh()

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._refresh(force=True)

    def reused(self, message: str) -> None:
        self.steps[-1] += f" (reused {message})"  # stays with its step once it is done
        self._refresh(force=True)

    def log(self, line: str) -> None:
        self.lines.append(line)
        self._refresh()

    def finish(self, ok: bool) -> None:
        self.outcome, self.current_detail = ok, ""
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._shown >= _REFRESH_SECONDS:
            self._shown = now
            if self.handle is not None:
                self.handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": self._text(), "text/html": self._html()}

    def _marks(self) -> list[str]:
        marks = ["✓"] * len(self.steps)
        if marks and self.outcome is not True:
            marks[-1] = "✗" if self.outcome is False else "…"
        return marks

    def _text(self) -> str:
        lines = [f"{mark} {step}" for mark, step in zip(self._marks(), self.steps, strict=True)]
        if self.current_detail:
            lines.append(f"    {self.current_detail}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def _html(self) -> str:
        rows = [f"<div>{_mark_html(mark)} {_inline(step)}</div>"
                for mark, step in zip(self._marks(), self.steps, strict=True)]
        if self.current_detail:
            rows.append(f"<div style='margin-left: 2em; color: #666'>{html.escape(self.current_detail)}</div>")
        rows += [f"<div style='color: #9a5b00'>⚠ {_inline(warning)}</div>" for warning in self.warnings]
        if self.lines:
            rows.append(
                f"<details><summary>Full build log ({len(self.lines)} lines)</summary>"
                f"<pre style='max-height: 24em; overflow: auto'>{html.escape(chr(10).join(self.lines))}"
                "</pre></details>"
            )
        return f"<div class='nb2container-progress' style='{_FONT}'>{''.join(rows)}</div>"


class Containerized:
    """What ``%containerize`` returns: the image, the report, and a summary that displays itself."""

    def __init__(self, report: BuildReport, log: list[str]) -> None:
        self.report, self.log = report, log

    @property
    def image(self) -> str | None:
        """The tag, given only to an image whose smoke test passed."""
        return self.report.image

    @property
    def ok(self) -> bool:
        """The report's verdict: the same decision as the CLI's exit code and the tag."""
        return self.report.verdict.ok

    @property
    def folder(self) -> str | None:
        return self.report.folder

    def _facts(self) -> list[tuple[str, str]]:
        report = self.report
        size = f"{report.size_bytes / 1e6:.0f} MB" if report.size_bytes else "not built"
        facts = [
            ("image", report.image or (f"{report.image_id[:19]} (untagged)" if report.image_id else "not built")),
            ("size", size),
            ("function", report.function),
            ("Python", report.python),
            ("packages", f"{len(report.packages)} locked"),
            ("CUDA", describe(Cuda(**report.cuda) if report.cuda else None)),
            ("left out", lean.describe(tuple(LeftOut(**item) for item in report.left_out))),
            ("artifacts", ", ".join(f"{a['name']} ({a['format']})" for a in report.artifacts) or "none"),
            ("data files", ", ".join(f["path"] for f in report.files) or "none"),
            ("bound", ", ".join(f"{p} = {g}" for p, g in sorted(report.interface.get("bound", {}).items()))
             or "none"),
            ("build folder", report.folder or "-"),
        ]
        return facts

    def _verdict(self) -> str:
        smoke, verdict = self.report.smoke, self.report.verdict
        if not verdict.ok:
            untagged = ", so it was not tagged" if self.report.image_id else ""
            return (f"The image does NOT reproduce the notebook{untagged}: " + "; ".join(verdict.reasons) + ".")
        if self.report.image_id is None:
            return "Rendered the build folder (--no-build)."
        if smoke is None:
            return f"Built {self.report.image}; the smoke test was skipped (--no-smoke)."
        if smoke.ok and not smoke.cases:
            return (f"{self.report.image} is healthy. No call of `{self.report.function}` was recorded, "
                    "so only the health check ran: call it in a cell, or pass --example.")
        if verdict.nothing_compared:
            return (f"{self.report.image} {verdict.words} ({smoke.passed} of {len(smoke.cases)} calls answer "
                    f"like the notebook's code): {NOTHING_COMPARED}")
        if smoke.stale:
            return (f"{self.report.image} {verdict.words} the notebook's code ({smoke.passed} of {len(smoke.cases)} "
                    f"calls match); {smoke.stale} stale saved output(s) were allowed (--allow-stale).")
        return (f"{self.report.image} {verdict.words} the notebook: {smoke.passed} of {len(smoke.cases)} calls "
                f"match, {verdict.compared} compared with its saved outputs.")

    def __repr__(self) -> str:
        lines = [f"{name}: {value}" for name, value in self._facts()]
        if self.report.smoke is not None:
            lines += ["", smoke_table(self.report.smoke)]
        lines += [f"warning: {warning}" for warning in self.report.warnings]
        return scrubbed("\n".join([*lines, "", self._verdict()]), self.report.hidden)

    def _repr_html_(self) -> str:
        facts = "".join(f"<tr><th style='text-align: left; padding-right: 1em'>{html.escape(name)}</th>"
                        f"<td style='text-align: left'>{html.escape(value)}</td></tr>"
                        for name, value in self._facts())
        parts = [f"<table>{facts}</table>"]
        smoke = self.report.smoke
        if smoke is not None:
            head = "".join(f"<th style='text-align: left'>{h}</th>"
                           for h in ("", "cell", "call", "notebook", "container", "note"))
            rows = "".join(_case_row(case) for case in smoke.cases)
            health = "✓ health check" if smoke.health else "✗ health check failed"
            parts.append(f"<p>{health}</p>")
            if smoke.cases:
                parts.append(f"<table class='nb2container-smoke'><tr>{head}</tr>{rows}</table>")
        parts += [f"<div style='color: #9a5b00'>⚠ {_inline(w)}</div>" for w in self.report.warnings]
        colour = "#1a7f37" if self.ok else "#b42318"
        parts.append(f"<p style='color: {colour}; font-weight: bold'>{_inline(self._verdict())}</p>")
        hidden = tuple(html.escape(value) for value in self.report.hidden)
        return scrubbed(f"<div class='nb2container-summary' style='{_FONT}'>{''.join(parts)}</div>", hidden)


def _inline(text: str) -> str:
    """Escaped text, with `names` in backticks shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_MARK_COLOURS = {"✓": "#1a7f37", "✗": "#b42318", "…": "#666", "-": "#666"}


def _mark_html(mark: str) -> str:
    return f"<span style='color: {_MARK_COLOURS[mark]}'>{mark}</span>"


def _case_row(case: SmokeCase) -> str:
    mark = "-" if case.skipped else ("✓" if case.passed else "✗")
    note = case.difference if not case.passed and case.difference else case.note
    if case.stale:
        note = f"stale in the notebook: its code now gives {short_value(case.expected, 60)}; re-run and save it"
    elif not note and case.checked.startswith("not compared"):
        note = case.checked
    cells = [_mark_html(mark), where_label(case), case.call,
             shown_value(shown_expected(case), case.expected_stdout, 80),
             shown_value(case.actual, case.actual_stdout, 80), note or ""]
    escaped = [cells[0], *(html.escape(str(c)) for c in cells[1:])]
    return "<tr>" + "".join(f"<td style='text-align: left'>{c}</td>" for c in escaped) + "</tr>"
