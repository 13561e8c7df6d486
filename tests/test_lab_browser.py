"""The JupyterLab extension in a real JupyterLab, driven in Debian's Chromium through Playwright:
"Containerize…" from the command palette, the notebook toolbar and the context menu, from the
saved notebook and from the live kernel, against the real engine. Each test runs against
JupyterLab 4.4 (.venv-lab44) and the newest 4.x (.venv), both set up by scripts/setup-dev.sh.

Set NB2C_DOCS_SCREENSHOTS=1 to refresh docs/jupyterlab-panel.png from the newest JupyterLab.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from tests.conftest import NOTEBOOKS, ROOT

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright cannot download its own here
# Without the background-networking flags Chromium keeps dialling Google, refused by this machine.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LABS = {"newest": ROOT / ".venv", "4.4": ROOT / ".venv-lab44"}
TOKEN = "nb2c-browser-test"
BUILD_SECONDS = 600
SCREENSHOT = ROOT / "docs" / "jupyterlab-panel.png"

pytestmark = pytest.mark.engine


@dataclass
class Lab:
    url: str
    root: Path
    version: str
    name: str

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?reset&token={TOKEN}"  # reset: no tabs left by the last test


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _failing_notebook(path: Path) -> None:
    cells = [nbformat.v4.new_code_cell("def double(x):\n    return 2 * x"),
             nbformat.v4.new_code_cell("double(21)"),
             nbformat.v4.new_code_cell("rates = {'a': 1}\nrates['b']")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module", params=sorted(LABS))
def lab(request: pytest.FixtureRequest, docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real JupyterLab with nb2container installed, serving a folder of its own."""
    prefix = LABS[request.param]
    if not (prefix / "bin" / "jupyter-lab").exists() or not CHROMIUM.exists():
        message = f"JupyterLab in {prefix.name} or {CHROMIUM} is missing: run scripts/setup-dev.sh"
        if os.environ.get("NB2C_REQUIRE_ENGINE"):
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp(f"lab-{request.param}")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    shutil.copy(NOTEBOOKS / "house_prices.ipynb", root)
    _failing_notebook(root / "missing_key.ipynb")
    # No news or update toasts over the panel; no workspace or configuration of the user's.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(base / "ws"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_DATA_DIR": str(base / "data"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "NB2CONTAINER_RUNS_DIR": str(base / "runs"),
           # the front end as pip installed it into .venv, which JupyterLab 4.4's own prefix lacks
           "JUPYTER_PATH": str(ROOT / ".venv" / "share" / "jupyter")}
    (base / "config").mkdir()
    (base / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"nb2container": True}}}))
    version = subprocess.run([prefix / "bin" / "python", "-c", "import jupyterlab; print(jupyterlab.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    port = _free_port()
    log = open(base / "lab.log", "wb")  # noqa: SIM115  # open for the server's life
    server = subprocess.Popen(
        [prefix / "bin" / "jupyter-lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/api/status", headers={"Authorization": f"token {TOKEN}"}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(base / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(url, root, version, request.param)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, which
# the async tests after this module (pytest-jupyter's) must not find running.
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("chromium-home")  # its crash database and caches: not the user's
    environment = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=environment)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    yield opened
    context.close()


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    page.goto(lab.page_url(name))
    page.wait_for_selector(".jp-NotebookPanel-toolbar .nb2c-ToolbarButton")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")


def run_from_palette(page: Any, label: str) -> None:
    """Run a command from the command palette, as a user does: open it, type, click. The palette
    hides when it loses the focus, which a notebook still settling after it opened can take back:
    then again, up to five times."""
    for _ in range(5):
        page.evaluate("window.jupyterapp.commands.execute('apputils:activate-command-palette')")
        try:
            page.locator(".lm-CommandPalette-input").fill(label.rstrip("…"), timeout=3000)
            page.locator(f".lm-CommandPalette-item:has-text('{label}')").click(timeout=3000)
            return
        except playwright.Error:
            continue
    raise AssertionError(f"the command palette never stayed open long enough to run {label!r}")


def fill_dialog(page: Any, tag: str | None = None, live: bool = False) -> None:
    page.wait_for_selector(".nb2c-Dialog")
    if live:
        page.check(".nb2c-Dialog input[value='live']")
    if tag is not None:
        page.fill(".nb2c-Dialog input[name='tag']", tag)
    page.click(".jp-Dialog-button.jp-mod-accept")


def wait_for_verdict(page: Any) -> str:
    page.wait_for_selector(".nb2c-Verdict:not([hidden])", timeout=BUILD_SECONDS * 1000)
    return str(page.inner_text(".nb2c-Verdict"))


def case_verdicts(page: Any) -> list[str]:
    page.wait_for_selector(".nb2c-Cases:not([hidden])")
    return [str(text) for text in page.locator(".nb2c-Case td:last-child").all_inner_texts()]


def widen_panel(page: Any) -> None:
    """Drag the right sidebar's edge left, as a user would, so the verdict table shows whole."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)").last
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] - 330, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def test_containerize_from_the_palette_streams_steps_to_three_matches_and_keeps_the_history(
        lab: Lab, page: Any, docker_client: Any) -> None:
    tag = f"nb2c-test/lab-saved-{lab.name.replace('.', '')}:latest"
    open_notebook(page, lab, "house_prices.ipynb")
    run_from_palette(page, "Containerize…")
    fill_dialog(page, tag)
    # The steps arrive while the build runs, one after another, before any verdict.
    page.wait_for_selector(".nb2c-Step.nb2c-is-current")
    assert page.locator(".nb2c-Verdict:not([hidden])").count() == 0
    verdict = wait_for_verdict(page)
    assert verdict == "reproduces house_prices.ipynb", page.inner_text(".nb2c-Panel")
    assert case_verdicts(page) == ["match", "match", "match"]
    assert page.inner_text(".nb2c-Image-tag") == tag
    assert re.fullmatch(r" · \d+ MB", page.inner_text(".nb2c-Image-size"))
    assert "from the saved notebook" in page.inner_text(".nb2c-Run-title")
    steps = page.locator(".nb2c-Step.nb2c-is-done .nb2c-Step-text").all_inner_texts()
    assert steps[0].startswith("Running house_prices.ipynb in a fresh") and any("Smoke test" in s for s in steps)
    docker_client.images.get(tag)
    if lab.name == "newest" and os.environ.get("NB2C_DOCS_SCREENSHOTS"):
        widen_panel(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOT))

    # After a reload the panel comes back with the build in its history, and follows it again
    # from the store of runs: the same verdict and table.
    page.reload()
    page.wait_for_selector(".jp-NotebookPanel-toolbar .nb2c-ToolbarButton")
    if not page.locator("#nb2container-builds").is_visible():
        page.click(".jp-SideBar .lm-TabBar-tab[data-id='nb2container-builds']")
    page.wait_for_selector(f".nb2c-HistoryRow:has-text('{tag}')")
    assert wait_for_verdict(page) == "reproduces house_prices.ipynb"
    assert case_verdicts(page) == ["match", "match", "match"]


def test_containerize_from_the_live_kernel_through_the_context_menu(lab: Lab, page: Any, docker_client: Any) -> None:
    tag = f"nb2c-test/lab-live-{lab.name.replace('.', '')}:latest"
    open_notebook(page, lab, "house_prices.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".jp-Cell:last-child .jp-OutputArea-output:has-text('191000')")
    page.click(".jp-Cell:last-child .jp-InputArea-editor", button="right")
    page.click(".lm-Menu-item:has-text('Containerize…')")
    fill_dialog(page, tag, live=True)
    page.wait_for_selector(".nb2c-Run-title:has-text('from the live kernel')")
    # The kernel is not held: while the image builds, a new cell runs and answers.
    page.wait_for_selector(".nb2c-Step:has-text('Building the image')")
    page.evaluate("window.jupyterapp.commands.execute('notebook:insert-cell-below')")
    page.keyboard.press("Enter")
    page.keyboard.type("6 * 7")
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".jp-OutputArea-output:has-text('42')")
    assert page.locator(".nb2c-Verdict:not([hidden])").count() == 0, "the build ended before the cell ran"

    assert wait_for_verdict(page) == "reproduces house_prices.ipynb", page.inner_text(".nb2c-Panel")
    assert case_verdicts(page) == ["match", "match", "match"]
    assert page.inner_text(".nb2c-Image-tag") == tag
    # after the saved notebook's build in this JupyterLab, the panel says what this one reused
    assert "build steps from the engine's cache" in page.inner_text(".nb2c-Steps")
    docker_client.images.get(tag)


def test_refusals_and_failing_builds_show_nb2containers_paragraph(lab: Lab, page: Any) -> None:
    open_notebook(page, lab, "missing_key.ipynb")
    page.click(".nb2c-ToolbarButton")
    fill_dialog(page, "Not A Tag!")  # refused before anything starts, in the CLI's words
    error = page.locator(".nb2c-Panel-error")
    error.wait_for(state="visible")
    assert "tag" in error.inner_text().lower()
    assert page.locator(".jp-Dialog").count() == 0  # the paragraph is in the panel, not a dialog

    page.click(".nb2c-ToolbarButton")
    fill_dialog(page)
    verdict = wait_for_verdict(page)
    assert verdict.startswith("Cell 3 of missing_key.ipynb failed") and "KeyError" in verdict, verdict
    assert "nb2c-is-failed" in (page.get_attribute(".nb2c-Verdict", "class") or "")
    assert page.locator(".nb2c-Step.nb2c-is-failed").count() == 1
    assert page.locator(".nb2c-Panel-error").is_hidden()
