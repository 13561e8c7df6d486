"""Record the calls the notebook's cells make to its functions.

Installed in the kernel before the first cell (the CLI, for the function it serves) or when
``%load_ext nb2container`` runs (the magic, for every function the notebook defines, since
the one to serve is named later). An AST transformer re-binds a function right after each
``def`` of it (so a cell that defines and calls it is recorded too), and a post-run hook
wraps functions bound some other way.

Only calls made by the cells themselves are recorded (from a cell's top level or a
comprehension in it), not calls from inside other functions: those are the calls a person
made and saw, and helpers called in a loop cost nothing. Each call keeps the execution count
of its cell, its arguments, and its result both as JSON and as the text IPython would
display. The files a call opens are watched too (``files.FileWatch``).
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import functools
import inspect
import sys
import types
from dataclasses import asdict, dataclass, field
from typing import Any

from nb2container.kernel import ORIGINAL_ATTR, RECORDER_NAME
from nb2container.kernel.files import FileWatch
from nb2container.kernel.jsonable import to_jsonable


@dataclass
class Call:
    function: str
    execution_count: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    replayable: bool
    result: Any = None
    result_text: str | None = None
    reason: str = ""
    source: str = "cell"  # "cell": the notebook made it; "example": given with --example


@dataclass
class CallRecorder:
    shell: Any
    function: str | None  # None: every function the notebook defines
    limit: int = 200  # calls kept per function
    calls: list[Call] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    files: FileWatch = field(default_factory=FileWatch)
    installed_at: int = 0  # the execution count when recording began

    def install(self) -> None:
        self.shell.user_ns[RECORDER_NAME] = self
        self.installed_at = int(getattr(self.shell, "execution_count", 0) or 0)
        self.shell.ast_transformers.append(_RebindAfterDef(self.function))
        self.shell.events.register("post_run_cell", self._after_cell)
        self._wrap_namespace()

    def records(self, name: str) -> bool:
        return self.function is None or name == self.function

    def wrap(self, fn: Any) -> Any:
        """The recording twin of ``fn``; the original stays reachable for capture."""
        if not inspect.isfunction(fn) or ORIGINAL_ATTR in fn.__dict__ or inspect.isgeneratorfunction(fn):
            return fn
        user_ns = self.shell.user_ns

        def from_cell(frame: types.FrameType | None) -> bool:
            return frame is not None and frame.f_globals is user_ns and frame.f_code.co_name.startswith("<")

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def recorded_async(*args: Any, **kwargs: Any) -> Any:
                if not from_cell(sys._getframe(1)):
                    return await fn(*args, **kwargs)
                with self.files:
                    result = await fn(*args, **kwargs)
                self._record(fn.__name__, args, kwargs, result)
                return result

            wrapper: Any = recorded_async
        else:

            @functools.wraps(fn)
            def recorded(*args: Any, **kwargs: Any) -> Any:
                if not from_cell(sys._getframe(1)):
                    return fn(*args, **kwargs)
                with self.files:
                    result = fn(*args, **kwargs)
                self._record(fn.__name__, args, kwargs, result)
                return result

            wrapper = recorded
        setattr(wrapper, ORIGINAL_ATTR, fn)
        return wrapper

    def as_dicts(self, function: str) -> list[dict[str, Any]]:
        return [asdict(call) for call in self.calls if call.function == function]

    def call_example(self, function: str, body: Any) -> dict[str, Any]:
        """Call ``function`` with a request body (--example) here, and return it as a call."""
        fn = self.shell.user_ns[function]
        fn = getattr(fn, ORIGINAL_ATTR, fn)
        args, kwargs = (list(body), {}) if isinstance(body, list) else ([], dict(body))
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):  # the kernel's own loop is running: use another thread
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                result = pool.submit(asyncio.run, result).result()
        call = make_call(self.shell, function, args, kwargs, result)
        call.source = "example"
        return asdict(call)

    def _after_cell(self, result: Any) -> None:
        # Calls are stamped here, from IPython's own ExecutionResult: reading
        # shell.execution_count during a cell differs between IPython versions.
        count = getattr(result, "execution_count", None)
        for call in self.calls:
            if call.execution_count is None:
                call.execution_count = count
        self.files.stamp(count)
        self._wrap_namespace()

    def _wrap_namespace(self, *_: Any) -> None:
        ns = self.shell.user_ns
        names = [self.function] if self.function else [
            name for name, value in list(ns.items())
            if not name.startswith("_") and getattr(value, "__module__", None) == "__main__"
        ]
        for name in names:
            if name in ns:
                ns[name] = self.wrap(ns[name])

    def _record(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        self.totals[function] = self.totals.get(function, 0) + 1
        if self.totals[function] <= self.limit:
            self.calls.append(make_call(self.shell, function, list(args), kwargs, result))


def make_call(shell: Any, function: str, args: list[Any], kwargs: dict[str, Any], result: Any) -> Call:
    """A call as recorded: arguments and result as JSON (when they have a JSON form) and as shown."""
    call = Call(function, None, [], {}, replayable=True)
    try:
        call.args = to_jsonable(args)
        call.kwargs = to_jsonable(kwargs)
    except (TypeError, ValueError) as exc:
        call.replayable, call.reason = False, f"an argument cannot be sent as JSON: {exc}"
    try:
        call.result = to_jsonable(result)
    except (TypeError, ValueError) as exc:
        call.replayable, call.reason = False, f"the result has no JSON form: {exc}"
    call.result_text = display_text(shell, result)
    return call


def display_text(shell: Any, value: Any) -> str | None:
    """The text/plain IPython would show for ``value`` as a cell's result."""
    try:
        data, _ = shell.display_formatter.format(value)
        return data.get("text/plain")
    except Exception:
        return repr(value)


class _RebindAfterDef(ast.NodeTransformer):
    """After a top-level ``def NAME``, insert ``NAME = __nb2container_recorder__.wrap(NAME)``."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def visit_Module(self, node: ast.Module) -> ast.Module:
        body: list[ast.stmt] = []
        for stmt in node.body:
            body.append(stmt)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and self.name in (None, stmt.name):
                rebind = ast.parse(f"{stmt.name} = {RECORDER_NAME}.wrap({stmt.name})").body[0]
                body.append(ast.copy_location(rebind, stmt))
        node.body = body
        return ast.fix_missing_locations(node)
