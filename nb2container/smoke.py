"""Replay the notebook's calls against the running container and compare the answers.

Two questions, answered separately so that a user knows whether to distrust the image or
re-run the notebook:

- does the container answer like the notebook's code? Each answer is compared with the
  result of the same call in the fresh run (exact JSON, numbers within tolerance): a
  difference is a MISMATCH and fails the build;
- is the notebook's saved output still what its code gives? The stored output is compared
  with the fresh run's: a difference makes the call STALE (re-run the notebook and save),
  which fails the build unless --allow-stale (the report's verdict decides).
"""

from __future__ import annotations

import json
from typing import Any

from nb2container.compare import Unparseable, difference, parse_display_text, text_difference
from nb2container.engines import ContainerEngine
from nb2container.model import Example, SmokeCase, SmokeReport
from nb2container.progress import Progress


def smoke_test(
    engine: ContainerEngine,
    image: str,
    examples: tuple[Example, ...],
    function: str,
    port: int,
    rel_tol: float,
    abs_tol: float,
    progress: Progress,
    gpus: str | None = None,
    environment: dict[str, str] | None = None,
) -> SmokeReport:
    report = SmokeReport()
    progress.step(f"Smoke test: running the image and replaying {len(examples)} call(s)")
    with engine.serve(image, port, gpus=gpus, environment=environment) as running:
        report.health = running.request("GET", "/health", timeout=5)[0] == 200
        for example in examples:
            case = smoke_case(example, function, rel_tol, abs_tol)
            if not case.skipped:
                status, answer = running.request("POST", "/predict", case.request)
                _judge(case, status, answer, rel_tol, abs_tol)
            report.cases.append(case)
        report.usage = running.usage()
    return report


def smoke_case(example: Example, function: str, rel_tol: float, abs_tol: float) -> SmokeCase:
    """A call to replay, with the notebook's saved output read back: equal, stale, or not
    compared (and why), never "not compared" passed off as "checked". The saved output is held to
    the same tolerances as the container's answer (--rel-tol, --abs-tol)."""
    shown = [repr(a) for a in example.args] + [f"{k}={v!r}" for k, v in example.kwargs.items()]
    case = SmokeCase(
        execution_count=example.execution_count,
        cell=example.cell,
        call=example.shown or f"{function}({', '.join(shown)})",
        request=None,
        expected=example.fresh_result,
        expected_from="fresh run",
        repeats=example.repeats,
    )
    compared, why = False, example.unchecked or "the notebook saved no output for it"
    if example.stored_text is not None:
        try:
            case.stored = parse_display_text(example.stored_text)
        except Unparseable:
            if example.stored_text == example.fresh_text:  # the same text: equal, read back or not
                compared = True
            else:
                why = "its saved output is not a value nb2container reads back"
        else:
            compared = True
            if example.stored_text != example.fresh_text:
                case.stale_difference = difference(case.stored, example.fresh_result, rel_tol, abs_tol)
                case.stale = case.stale_difference is not None
    if example.stdout:
        case.expected_stdout = example.stdout
        saved, fresh, what = None, example.stdout, "what it printed"
        if example.stored_stdout is not None:
            saved = example.stored_stdout
        elif example.group_stdout is not None:
            saved = _own_words(*example.group_stdout, example.stdout)
            if saved is None:  # the words do not line up: the cell's calls are judged together
                (saved, fresh), what = example.group_stdout, "what the calls in its cell printed"
        if saved is not None:
            case.stored_stdout = saved
            compared = True
            found = text_difference(saved, fresh, rel_tol, abs_tol) if saved != fresh else None
            if found:
                case.stale, case.stale_difference = True, f"{what}: {found}"
    case.checked = "stale" if case.stale else ("equal" if compared else f"not compared: {why}")
    case.expected_from = {"stale": "fresh run (the saved output is stale)",
                          "equal": "fresh run, equal to the saved output"}.get(case.checked,
                                                                             "fresh run (no saved output compared)")
    if not example.replayable:
        case.skipped, case.difference = True, f"not replayed: {example.reason}"
        return case
    case.request = example.body
    return case


def _own_words(saved_group: str, fresh_group: str, own: str) -> str | None:
    """The saved words of one call among several that printed into one cell: those at the place its
    own words take in the fresh run (so each call answers for its own words, not the first one's)."""
    offset = fresh_group.find(own)
    saved_words = saved_group.split()
    if offset < 0 or len(saved_words) != len(fresh_group.split()):
        return None
    start = len(fresh_group[:offset].split())
    return " ".join(saved_words[start:start + len(own.split())])


def _judge(case: SmokeCase, status: int, answer: Any, rel_tol: float, abs_tol: float) -> None:
    if status != 200 or not isinstance(answer, dict) or "result" not in answer:
        case.difference = f"the container answered HTTP {status}: {json.dumps(answer)[:300]}"
        return
    case.actual, case.actual_stdout = answer["result"], answer.get("stdout")
    case.difference = difference(case.expected, case.actual, rel_tol, abs_tol)
    if case.difference is None and case.expected_stdout is not None:
        found = text_difference(case.expected_stdout, case.actual_stdout or "", rel_tol, abs_tol)
        case.difference = f"what it printed differs: {found}" if found else None
    case.passed = case.difference is None
