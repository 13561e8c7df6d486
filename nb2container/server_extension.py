"""nb2container inside a Jupyter server: the REST routes a JupyterLab panel builds with.

Every route is authenticated and authorized through the server's own authorizer (resource
``nb2container``; starting or stopping a build is an ``execute``). Builds of saved notebooks run
as ``nb2container build`` in a process of their own, recorded in the store of runs (runs.py),
which the routes read: a page reload resumes from the last event id it saw.

    GET    /nb2container/functions?path=NB      the functions NB defines, and the default one
    GET    /nb2container/options                the options a build may be given (the one table)
    POST   /nb2container/builds                 {"path", "function", "options"} -> 202 {"id"}
    GET    /nb2container/runs?path=NB           NB's builds, newest first
    GET    /nb2container/runs/ID                one run
    GET    /nb2container/runs/ID/events?after=N its events after N (waits up to `wait` s for one)
    GET    /nb2container/runs/ID/report         its report, once written
    DELETE /nb2container/runs/ID                cancel it

Notebooks are taken only under the server's root directory. The engine and the push registry
come from the server's configuration (its environment), never from a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nb2container import config, notebook, runs
from nb2container.errors import Nb2ContainerError
from nb2container.options import FLAGS, Flag, given_flags

RESOURCE = "nb2container"
# What a request may set. Left out: where files are written on the server (output, report,
# junit, runs_dir, templates), the push registry (push) and the kernel to start.
REQUEST_OPTIONS = ("tag", "platform", "port", "no_smoke", "verify_notebook", "allow_stale", "examples", "bind",
                   "no_bind", "batch", "batch_max_size", "batch_max_wait_ms", "rel_tol", "abs_tol", "secrets",
                   "not_secrets", "gpus", "engine", "timeout", "max_artifact_mb", "base_image", "system_packages")
MAX_WAIT_SECONDS = 30


class RequestRefused(web.HTTPError):
    """A 4xx whose message is nb2container's own paragraph, sent as JSON by APIHandler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, reason=None, log_message=message)


class _Handler(APIHandler):
    auth_resource = RESOURCE

    def root(self) -> Path:
        return Path(self.settings["server_root_dir"]).expanduser().resolve()

    def notebook_path(self, relative: str | None) -> Path:
        """A notebook under the server's root, or a 400 that says why."""
        if not relative:
            raise RequestRefused(400, "Name the notebook: `path`, relative to the server's root.")
        root = self.root()
        try:
            path = (root / relative.lstrip("/")).resolve()
        except (ValueError, OSError):  # a NUL byte, a loop of links
            raise RequestRefused(400, f"{relative!r} is not a path of a notebook under the server's root.") from None
        if not path.is_relative_to(root):
            raise RequestRefused(400, f"The notebook {relative} is outside the server's root ({root}); nb2container "
                                      "builds only notebooks under it.")
        if path.suffix != ".ipynb" or not path.is_file():
            raise RequestRefused(400, f"There is no notebook at {relative} under the server's root.")
        return path

    def shown(self, info: runs.RunInfo) -> dict[str, Any]:
        """A run as the panel shows it: with whether it lives, and its build folder as a path the
        file browser can open (relative to the server's root; None when it lies outside)."""
        shown = asdict(info)
        shown["alive"] = info.alive
        folder = Path(info.folder).resolve() if info.folder else None
        root = self.root()
        shown["folder_path"] = folder.relative_to(root).as_posix() if folder and folder.is_relative_to(root) else None
        return shown

    def run_folder(self, run_id: str) -> Path:
        try:
            return runs.find(run_id, self.runs_dir())
        except Nb2ContainerError as error:
            raise RequestRefused(404, str(error)) from None

    def runs_dir(self) -> Path | None:
        configured = self.settings.get("nb2container_runs_dir")
        return Path(configured) if configured else None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as ``{"message": ...}`` (the server's own shape), nb2container's paragraph when it is one."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": self._reason}))


class FunctionsHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.notebook_path(self.get_query_argument("path", None))
        try:
            nb = notebook.read_notebook(path)
        except Nb2ContainerError as error:
            raise RequestRefused(400, str(error)) from None
        functions = notebook.defined_functions(nb)
        default = None
        with contextlib.suppress(Nb2ContainerError):  # no `serve` tag and no `predict`: the user picks
            default = notebook.choose_function(nb, None, path)
        self.finish(json.dumps({"functions": [{"name": name, "cell": cell} for name, cell in functions.items()],
                                "default": default}))


class OptionsHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps([_describe(flag) for flag in _request_flags().values()]))


class BuildsHandler(_Handler):
    @web.authenticated
    @authorized(action="execute")
    async def post(self) -> None:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise RequestRefused(400, "Send a JSON object: {\"path\": ..., \"function\": ..., \"options\": {...}}.")
        path = self.notebook_path(body.get("path"))
        function = body.get("function")
        if not isinstance(function, str) or not function:
            raise RequestRefused(400, "Name the function to serve: `function`.")
        argv = _build_argv(body.get("options") or {})
        try:  # the CLI's own checks, in its own words, before anything starts
            args = _parse(["build", str(path), "--function", function, *argv])
            options = config.resolve(given_flags(args), path.parent, notebook=path).options
            notebook.choose_function(notebook.read_notebook(path), function, path)
        except Nb2ContainerError as error:
            raise RequestRefused(400, str(error)) from None
        underway = runs.running(path, function, self.runs_dir() or options.runs_dir)
        if underway is not None:
            raise RequestRefused(409, f"`{function}` of {path.name} is already being built (run {underway.id}); "
                                      "wait for it or cancel it first.")
        run = runs.start(path, function, "lab", store=self.runs_dir() or options.runs_dir)
        command = [sys.executable, "-m", "nb2container", "build", str(path), "--function", function, *argv,
                   "--run-folder", str(run.folder)]
        with open(run.folder / "process.log", "wb") as log:
            process = subprocess.Popen(command, cwd=path.parent, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)
        run.claim(process.pid)
        asyncio.get_running_loop().run_in_executor(None, process.wait)  # reaped, never a zombie
        self.set_status(202)
        self.finish(json.dumps({"id": run.info.id, "run": self.shown(run.info)}))


class RunsHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        relative = self.get_query_argument("path", None)
        listed = runs.listing(self.runs_dir())
        if relative:
            path = str(self.notebook_path(relative))
            listed = [info for info in listed if info.notebook == path]
        self.finish(json.dumps([self.shown(info) for info in listed]))


class RunHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.finish(json.dumps(self.shown(runs.read_info(self.run_folder(run_id)))))

    @web.authenticated
    @authorized(action="execute")
    async def delete(self, run_id: str) -> None:
        folder = self.run_folder(run_id)
        info = runs.read_info(folder)
        if info.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(info.pid, signal.SIGTERM)  # the build removes its containers and tags nothing
        self.set_status(202)
        self.finish(json.dumps(self.shown(info)))


class EventsHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        folder = self.run_folder(run_id)
        try:
            after = int(self.get_query_argument("after", "0"))
            wait = min(float(self.get_query_argument("wait", "0")), MAX_WAIT_SECONDS)
        except ValueError:
            raise RequestRefused(400, "`after` is an event id (an integer) and `wait` a number of seconds.") from None
        deadline = asyncio.get_running_loop().time() + wait
        found = runs.events(folder, after)
        while not found and runs.read_info(folder).alive and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.25)
            found = runs.events(folder, after)
        info = runs.read_info(folder)
        self.finish(json.dumps({"events": found, "run": self.shown(info), "ended": not info.alive}))


class ReportHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        report = self.run_folder(run_id) / "report.json"
        if not report.is_file():
            raise RequestRefused(404, f"Run {run_id} has no report yet.")
        self.set_header("Content-Type", "application/json")
        self.finish(report.read_bytes())


def _request_flags() -> dict[str, Flag]:
    return {flag.key: flag for flag in FLAGS if flag.key in REQUEST_OPTIONS and "build" in flag.where}


def _describe(flag: Flag) -> dict[str, Any]:
    kwargs = flag.kwargs
    kind = "flag" if kwargs.get("action") == "store_true" else "list" if kwargs.get("action") == "append" else \
        getattr(kwargs.get("type"), "__name__", "str")
    return {"key": flag.key, "flag": flag.names[-1], "help": kwargs.get("help", ""), "kind": kind,
            "default": kwargs.get("default"), "choices": kwargs.get("choices")}


def _build_argv(options: Any) -> list[str]:
    """A request's options as the CLI's flags; a key it may not set is refused by name."""
    if not isinstance(options, dict):
        raise RequestRefused(400, "`options` is a JSON object of setting names to values.")
    allowed = _request_flags()
    argv: list[str] = []
    for key, value in options.items():
        flag = allowed.get(key)
        if flag is None:
            why = ("is set by the server's configuration, never by a request" if key in {f.key for f in FLAGS}
                   else "is not an option of nb2container")
            raise RequestRefused(400, f"`{key}` {why}. A build from JupyterLab may set: {', '.join(sorted(allowed))}.")
        name, action = flag.names[-1], flag.kwargs.get("action")
        if action == "store_true":
            if value is True:
                argv.append(name)
            elif value not in (False, None):
                raise RequestRefused(400, f"`{key}` is true or false, not {value!r}.")
        elif action == "append":
            for item in value if isinstance(value, list) else [value]:
                argv += [name, item if isinstance(item, str) else json.dumps(item)]
        elif value is not None:
            argv += [name, str(value)]
    return argv


def _parse(argv: list[str]) -> Any:
    """The CLI's parser; its refusal (a bad value, a wrong choice) as nb2container's paragraph."""
    from nb2container.cli import parser
    from nb2container.errors import UsageError

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return parser().parse_args(argv)
        except SystemExit:
            message = errors.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
            raise UsageError(f"The options were refused: {message}.") from None


def load(serverapp: Any) -> None:
    """Register the routes (``_load_jupyter_server_extension``)."""
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], "nb2container")
    run = r"/runs/(?P<run_id>[\w.-]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "functions"), FunctionsHandler),
        (url_path_join(base, "options"), OptionsHandler),
        (url_path_join(base, "builds"), BuildsHandler),
        (url_path_join(base, "runs"), RunsHandler),
        (base + run, RunHandler),
        (base + run + "/events", EventsHandler),
        (base + run + "/report", ReportHandler),
    ])
    serverapp.log.info("nb2container: routes at %s", base)
