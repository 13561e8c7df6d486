"""The build's report: a JSON document for machines and a table for people."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from packaging.utils import canonicalize_name as canonical

from nb2container import lean
from nb2container.cuda import describe
from nb2container.model import Capture, FrozenEnvironment, SmokeCase, SmokeReport, cell_label
from nb2container.secret_scan import scrubbed


@dataclass(frozen=True)
class Verdict:
    """Pass or fail, decided once; the exit code, the tag, the push, the magic, JUnit and deploy/ read it."""

    ok: bool
    reasons: tuple[str, ...] = ()  # why it failed, one sentence each
    compared: int = 0  # calls whose answer equals an output saved in the notebook: "reproduces" needs one
    stale: int = 0  # calls whose saved output is stale, shipped with --allow-stale

    @property
    def words(self) -> str:
        """What happened, in the same words everywhere (CLI, magic, JUnit, report)."""
        if not self.ok:
            return "does NOT reproduce"
        if self.compared:
            return "reproduces"
        if self.stale:
            return "serves the notebook's code, not its saved outputs (stale, allowed by --allow-stale)"
        return "built and served; nothing compared with the notebook"

    @property
    def nothing_compared(self) -> bool:
        return self.ok and not self.compared and not self.stale

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "words": self.words, "compared": self.compared, "reasons": list(self.reasons)}


NOTHING_COMPARED = ("no call's result is shown in an output saved in the notebook, so the image answers like the "
                    "notebook's code does now, and nothing shows that this is what the notebook showed. To have "
                    "it compared, end a cell with a call of the function (or show its result) and save the "
                    "notebook; calls given with --example are replayed, but have no saved output to compare.")


@dataclass
class BuildReport:
    notebook: str
    function: str
    image: str | None
    image_id: str | None
    size_bytes: int | None
    python: str
    packages: dict[str, str]
    folder: str | None
    smoke: SmokeReport | None
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # the notebook objects shipped
    files: list[dict[str, Any]] = field(default_factory=list)  # data files read at call time
    warnings: list[str] = field(default_factory=list)
    interface: dict[str, Any] = field(default_factory=dict)  # codecs, bound parameters, prints
    verify: Any = None  # verify.VerifyReport, with --verify-notebook
    system_packages: dict[str, str] = field(default_factory=dict)  # Debian packages added for libraries
    cuda: dict[str, Any] | None = None  # model.Cuda as a dict; None: CPU only
    left_out: list[dict[str, Any]] = field(default_factory=list)  # model.LeftOut: what the image does not carry
    pushed: str | None = None  # REGISTRY/REPO@sha256:... after --push
    stale: list[SmokeCase] = field(default_factory=list)  # calls whose saved output the code no longer gives
    allow_stale: bool = False  # --allow-stale: shipped anyway
    drift: list[str] = field(default_factory=list)  # how the image differs from the lock
    engine: str | None = None  # what built and ran the image (docker, podman, buildah; engines.py)
    refusal: str | None = None  # why the build was refused before a report could hold more (one paragraph)
    redacted: list[str] = field(default_factory=list)  # secret-like parameters, never written with their values
    hidden: tuple[str, ...] = field(default=(), repr=False)  # values no report, table or JUnit file may hold

    @property
    def verdict(self) -> Verdict:
        reasons = [self.refusal] if self.refusal else []
        if self.drift:
            reasons.append("the image does not hold the locked environment: " + "; ".join(self.drift))
        if self.smoke is not None and not self.smoke.health:
            reasons.append("the container did not answer its health check")
        if self.smoke is not None and self.smoke.failed:
            reasons.append(f"{self.smoke.failed} call(s) answered differently from the notebook's code (MISMATCH)")
        if self.stale and not self.allow_stale:
            reasons.append(f"{len(self.stale)} output(s) saved in the notebook are not what its code gives now "
                           "(STALE; --allow-stale ships anyway)")
        if self.verify is not None and not self.verify.ok:
            first = next((cell for cell in self.verify.cells if cell.outcome == "failed"), None)
            where = f": first {first.label}: {first.message.strip().splitlines()[0][:200]}" if first and \
                first.message.strip() else ""
            reasons.append("re-run inside the image's environment, the notebook does not reproduce its "
                           f"stored outputs (--verify-notebook){where}")
        cases = self.smoke.cases if self.smoke else []
        return Verdict(not reasons, tuple(reasons), sum(case.checked == "equal" for case in cases),
                       sum(case.checked == "stale" for case in cases))

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "function": self.function,
            "image": self.image,
            "image_id": self.image_id,
            "size_bytes": self.size_bytes,
            "python": self.python,
            "packages": self.packages,
            "system_packages": self.system_packages,
            "cuda": self.cuda,
            "left_out": self.left_out,
            "pushed": self.pushed,
            "engine": self.engine,
            "verdict": self.verdict.to_dict(),
            "stale": {"allowed": self.allow_stale, "count": len(self.stale),
                      "cases": [_case_dict(case) for case in self.stale]},
            "drift": self.drift,
            "refusal": self.refusal,
            "redacted_parameters": self.redacted,
            "build_folder": self.folder,
            "artifacts": self.artifacts,
            "files": self.files,
            "warnings": self.warnings,
            "interface": self.interface,
            "verify_notebook": self.verify.to_dict() if self.verify is not None else None,
            "smoke": self._smoke_dict(),
        }

    def _smoke_dict(self) -> dict[str, Any] | None:
        """The smoke report, each case with the words the tables show (for front ends that draw their own)."""
        if self.smoke is None:
            return None
        shown = self.smoke.to_dict()
        shown["cases"] = [_case_dict(case) for case in self.smoke.cases]
        return shown

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scrubbed(json.dumps(self.to_dict(), indent=2, default=str), self.hidden) + "\n")

    def write_junit(self, path: Path) -> None:
        """JUnit XML for CI systems: one test case per replayed call, the health check, and the verdict."""
        suite = ElementTree.Element("testsuite", name=f"nb2container smoke: {Path(self.notebook).name}")
        smoke = self.smoke or SmokeReport()
        classname = f"{Path(self.notebook).stem}.{self.function}"
        if self.smoke is not None:
            health = ElementTree.SubElement(suite, "testcase", classname=classname, name="health check")
            if not smoke.health:
                ElementTree.SubElement(health, "failure", message="the container did not answer /health")
        for case in smoke.cases:
            element = ElementTree.SubElement(suite, "testcase", classname=classname,
                                             name=f"{where_label(case)}: {case.call}")
            if case.skipped:
                ElementTree.SubElement(element, "skipped", message=case.difference or "not replayed")
            elif not case.passed:
                failure = ElementTree.SubElement(element, "failure", message=case.difference or "mismatch")
                failure.text = (f"notebook's code: {short_value(case.expected)}\n"
                                f"container: {short_value(case.actual)}")
            if case.stale:
                out = ElementTree.SubElement(element, "system-out")
                saved, fresh = stale_values(case)
                out.text = (f"STALE: the notebook shows {saved}; its code now gives {fresh}. "
                            "Re-run the notebook and save it.")
            elif case.checked.startswith("not compared"):
                ElementTree.SubElement(element, "system-out").text = f"the saved output was {case.checked}"
        verdict = self.verdict  # stale outputs and drift fail the build even when every call matched
        element = ElementTree.SubElement(suite, "testcase", classname=classname, name="verdict")
        if not verdict.ok:
            ElementTree.SubElement(element, "failure", message="; ".join(verdict.reasons)[:1000])
        elif self.smoke is not None:
            said = verdict.words + (f": {NOTHING_COMPARED}" if verdict.nothing_compared else "")
            ElementTree.SubElement(element, "system-out").text = f"{self.image or self.image_id} {said}"
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
        suites = ElementTree.Element("testsuites")
        suites.append(suite)
        if self.verify is not None:
            suites.append(self.verify.junit_suite())
        path.parent.mkdir(parents=True, exist_ok=True)
        ElementTree.indent(suites)
        text = ElementTree.tostring(suites, encoding="unicode", xml_declaration=True)
        path.write_text(scrubbed(text, tuple(escape(value) for value in self.hidden)) + "\n", encoding="utf-8")


TABLE_VALUE_CHARS = 40  # values in the table; the report keeps them whole


def smoke_table(report: SmokeReport) -> str:
    """call | notebook output | container output | verdict, fitted to the terminal."""
    rows = [("cell", "call", "notebook", "container", "verdict")]
    for case in report.cases:
        rows.append((where_label(case), case.call,
                     shown_value(shown_expected(case), case.expected_stdout, TABLE_VALUE_CHARS),
                     shown_value(case.actual, case.actual_stdout, TABLE_VALUE_CHARS), verdict(case)))
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    widths[1] = max(10, min(widths[1], width - sum(widths) + widths[1] - 12))
    lines = []
    for n, row in enumerate(rows):
        cells = [_fit(value, widths[i]) for i, value in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for case in report.cases:
        where = where_label(case)
        if case.difference and not case.passed and case.actual is None and case.actual_stdout is None:
            lines.append(f"{where}: {'SKIPPED' if case.skipped else 'MISMATCH'} {case.call}: {case.difference}")
        elif case.difference and not case.passed:
            lines.append(f"{where}: MISMATCH {case.call}: the container answered "
                         f"{shown_value(case.actual, case.actual_stdout, 80)} where the notebook's code gives "
                         f"{shown_value(case.expected, case.expected_stdout, 80)}; {case.difference}")
        if case.stale:
            saved, fresh = stale_values(case, 80)
            lines.append(f"{where}: STALE {case.call}: the notebook shows {saved}, but its code now gives {fresh} "
                         f"({case.stale_difference}); re-run the notebook and save it")
        if case.checked.startswith("not compared"):
            alike = [c for c in report.cases if (c.cell, c.checked) == (case.cell, case.checked)]
            why = case.checked.replace(":", " with the saved output, since", 1)
            if len(alike) == 1:
                lines.append(f"{where}: {case.call} was {why}")
            elif case is alike[0]:  # one line for a cell's calls left out alike (a column mapped with .apply)
                lines.append(f"{where}: {len(alike)} calls ({case.call}, ...) were {why}")
        if case.note:
            lines.append(f"note, {where}: {case.note}")
    summary = f"{report.passed} passed, {report.failed} failed"
    if report.skipped:
        summary += f", {report.skipped} skipped"
    if report.stale:
        summary += f"; {report.stale} stale in the notebook"
    if report.not_compared:
        summary += f"; {report.not_compared} not compared with the notebook's saved output"
    lines.append(f"health: {'ok' if report.health else 'FAILED'}; calls: {summary}")
    return "\n".join(lines)


def stale_table(stale: list[SmokeCase]) -> str:
    """The calls whose saved output is out of date, for a build refused before it started."""
    return "\n".join(f"{where_label(case)}: STALE {case.call}: the notebook shows {stale_values(case)[0]}, "
                     f"but its code now gives {stale_values(case)[1]} ({case.stale_difference})"
                     for case in stale)


def stale_values(case: SmokeCase, limit: int | None = None) -> tuple[str, str]:
    """(saved, fresh) of a STALE call as a person reads them: its value, or what it printed."""
    return (shown_value(case.stored, case.stored_stdout, limit),
            shown_value(case.expected, case.expected_stdout, limit))


def short_value(value: Any, limit: int | None = None) -> str:
    text = "-" if value is None else json.dumps(value, default=str)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _case_dict(case: SmokeCase) -> dict[str, Any]:
    """A case as the report holds it: its fields, and the words the tables show for it."""
    return {**asdict(case), "verdict": verdict(case), "where": where_label(case)}


def verdict(case: SmokeCase) -> str:
    if case.skipped:
        return "skipped"
    if not case.passed:
        return "MISMATCH"
    if case.stale:
        return "match, STALE"
    return "match" if case.checked == "equal" else "match, not compared"


def shown_expected(case: SmokeCase) -> Any:
    return case.stored if case.stored is not None else case.expected


def shown_value(result: Any, stdout: str | None, limit: int | None = None) -> str:
    """The result, or for a function that prints and returns nothing, what it printed."""
    if result is None and stdout:
        return short_value(f"printed: {' | '.join(stdout.strip().splitlines())}", limit)
    return short_value(result, limit)


def where_label(case: SmokeCase) -> str:
    return cell_label(case.cell, case.execution_count)


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def frozen_table(capture: Capture, frozen: FrozenEnvironment) -> str:
    """``nb2container freeze``: the environment the image would hold, for people."""
    roots = {canonical(name) for name in frozen.roots}
    rows = [("package", "version", "why", "wheel", "sha256")]
    for pin in sorted(frozen.pins, key=lambda p: canonical(p.name)):
        why = "imported" if canonical(pin.name) in roots else "required"
        why += "" if pin.source == "index" else f", built from {pin.source.split(' ', 1)[1]}"
        rows.append((pin.name, pin.version, why, pin.wheel, pin.sha256[:16]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"`{capture.spec.function}` from {capture.notebook_name}: Python {frozen.python_version} "
             f"({capture.interpreter.implementation}, {capture.interpreter.machine}), "
             f"{len(frozen.pins)} package(s)", ""]
    for n, row in enumerate(rows):
        lines.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"\nCUDA: {describe(frozen.cuda)}")
    for item in frozen.left_out:
        if not item.suite:
            lines.append(f"\nleft out of the image: {item.what} ({item.bytes / 1e6:,.0f} MB): {item.why}")
    if frozen.left_out:
        lines.append(f"\nleft out in all: {lean.describe(frozen.left_out)}")
    for package in frozen.system_packages:
        lines.append(f"\nsystem package {package.name} {package.version}: {'; '.join(package.needed_by)}")
    if frozen.unplaced_libraries:
        lines.append("\nshared libraries no known package provides: " + ", ".join(frozen.unplaced_libraries))
    if frozen.unmapped_modules:
        lines.append("\nmodules no installed distribution provides (not locked): " + ", ".join(frozen.unmapped_modules))
    return "\n".join(lines)


def frozen_json(capture: Capture, frozen: FrozenEnvironment) -> str:
    """``nb2container freeze --json``: the same, for machines."""
    return json.dumps({
        "function": capture.spec.function, "notebook": capture.notebook_name,
        "python": frozen.python_version, "implementation": capture.interpreter.implementation,
        "machine": capture.interpreter.machine, "roots": sorted(frozen.roots),
        "packages": [{"name": p.name, "version": p.version, "wheel": p.wheel, "sha256": p.sha256,
                      "source": p.source}
                     for p in sorted(frozen.pins, key=lambda p: canonical(p.name))],
        "unmapped_modules": list(frozen.unmapped_modules),
        "system_packages": [{"name": p.name, "version": p.version, "deb": p.deb, "sha256": p.sha256,
                             "needed_by": list(p.needed_by)} for p in frozen.system_packages],
        "unplaced_libraries": list(frozen.unplaced_libraries),
        "cuda": asdict(frozen.cuda) if frozen.cuda else None,
        "left_out": [asdict(item) for item in frozen.left_out],
    }, indent=2)
