"""The store of builds (runs.py) and `nb2container runs`: pure logic over real folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nb2container import runs
from nb2container.report import BuildReport
from tests.conftest import cli


def report(hidden: tuple[str, ...] = ()) -> BuildReport:
    """A report whose verdict fails (nothing built), naming a secret-like value it must not show."""
    return BuildReport("/work/house.ipynb", "predict", None, None, None, "3.11.7", {}, None, None,
                       refusal=f"the call predict('{hidden[0]}') is stale" if hidden else "refused", hidden=hidden)


def test_a_run_records_events_in_order_and_ends_with_its_verdict(tmp_path: Path) -> None:
    run = runs.start(Path("/work/house.ipynb"), "predict", "cli", store=tmp_path)
    run.event("step", "Capturing `predict`")
    run.event("log", "Step 1/25 : FROM python")
    assert [e["id"] for e in runs.events(run.folder)] == [1, 2]
    assert [e["kind"] for e in runs.events(run.folder, after=1)] == ["log"]  # resumed after the last seen
    assert runs.running(Path("/work/house.ipynb"), "predict", tmp_path) is not None  # this process builds it
    run.finish(report())
    info = runs.read_info(run.folder)
    assert (info.state, info.ended is not None, info.function) == ("failed", True, "predict")
    last = runs.events(run.folder)[-1]
    assert last["kind"] == "verdict" and last["id"] == 3 and last["ok"] is False
    assert json.loads((run.folder / "report.json").read_text())["function"] == "predict"
    assert runs.running(Path("/work/house.ipynb"), "predict", tmp_path) is None


def test_hidden_values_leave_the_events_once_the_report_names_them(tmp_path: Path) -> None:
    token = "sk_live_51HqLyjWDarjtT1zdp7dcX"
    run = runs.start(None, "predict", "magic", store=tmp_path)
    run.event("warning", f"the saved output of predict('{token}') is stale")
    run.finish(report(hidden=(token,)))
    written = "".join(path.read_text() for path in run.folder.iterdir())
    assert token not in written and "[redacted]" in written


def test_a_run_whose_process_is_gone_is_not_running(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    run = runs.start(None, "predict", "magic", pid=int(gone.stdout), store=tmp_path)
    assert not runs.read_info(run.folder).alive
    assert runs.running(None, "predict", tmp_path) is None
    assert "stopped" in runs.table(runs.listing(tmp_path))


def test_old_finished_runs_are_pruned_and_a_live_one_kept(tmp_path: Path) -> None:
    live = runs.start(None, "live", "magic", pid=os.getpid(), store=tmp_path)
    for n in range(4):
        runs.start(None, f"f{n}", "cli", store=tmp_path).fail("refused")
    runs.prune(tmp_path, keep=2)
    left = {info.function for info in runs.listing(tmp_path)}
    assert "live" in left and len(left) == 2 and live.folder.is_dir()


def test_the_runs_command_lists_shows_and_refuses_an_unknown_id(tmp_path: Path) -> None:
    run = runs.start(Path("/work/house.ipynb"), "predict", "cli", store=tmp_path)
    run.event("step", "Building the image")
    run.event("warning", "the base image could not be inspected")
    run.fail("The image did not build at step 5.")
    listed = cli("runs", "--runs-dir", tmp_path)
    assert listed.returncode == 0 and "house.ipynb" in listed.stdout and "failed" in listed.stdout
    shown = cli("runs", "--runs-dir", tmp_path, "show", run.info.id[:17])
    assert "==> Building the image" in shown.stdout and "warning: the base image" in shown.stdout
    assert "failed: The image did not build at step 5." in shown.stdout
    as_json = json.loads(cli("runs", "--runs-dir", tmp_path, "--json").stdout)
    assert as_json[0]["id"] == run.info.id and as_json[0]["state"] == "failed"
    unknown = cli("runs", "--runs-dir", tmp_path, "show", "nosuch")
    assert unknown.returncode == 1 and "no run whose id starts with `nosuch`" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    empty = cli("runs", "--runs-dir", tmp_path / "none")
    assert empty.returncode == 0 and "No builds recorded yet" in empty.stdout


def test_a_refused_cli_build_is_recorded_with_its_paragraph(tmp_path: Path) -> None:
    from tests.conftest import NOTEBOOKS

    refused = cli("build", NOTEBOOKS / "house_prices.ipynb", "--function", "nosuch", "--runs-dir", tmp_path)
    assert refused.returncode == 1
    [info] = runs.listing(tmp_path)
    assert (info.source, info.function, info.state) == ("cli", "nosuch", "failed")
    assert "defines no function named `nosuch`" in info.verdict
    assert runs.events(tmp_path / info.id)[-1]["kind"] == "error"


def test_the_reports_cases_carry_the_tables_words_and_a_stale_one_is_its_replayed_case() -> None:
    from nb2container.model import SmokeCase, SmokeReport

    stale = SmokeCase(2, "predict(2)", [2], 4, "fresh run", passed=True, stale=True, stored=5, execution_count=7)
    matched = SmokeCase(1, "predict(1)", [1], 1, "notebook", passed=True, checked="equal")
    built = BuildReport("nb.ipynb", "predict", "img:1", "sha256:1", 1, "3.11.7", {}, None,
                        SmokeReport([matched, stale], health=True), stale=[stale], allow_stale=True)
    shown = built.to_dict()
    rows = shown["smoke"]["cases"]
    assert [(row["verdict"], row["where"]) for row in rows] == [("match", "cell 1"), ("match, STALE", "cell 2 [In 7]")]
    assert shown["stale"]["cases"] == [rows[1]]  # the same case, in the same words
