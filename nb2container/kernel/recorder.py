"""Record every call of the serving function while the notebook's cells run.

Installed in the kernel before the first cell: an AST transformer re-binds the
function right after each ``def`` of it (so a cell that defines and calls it is
recorded too), and a post-run hook wraps it when it was bound some other way.
Each call keeps the execution count of the cell that made it, its arguments, and its
result both as JSON and as the text IPython would display. The files a call opens are
watched too (``files.FileWatch``), so data the function reads at call time is shipped.
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from nb2container.kernel.files import FileWatch
from nb2container.kernel.jsonable import to_jsonable

RECORDER_NAME = "__nb2container_recorder__"
ORIGINAL_ATTR = "__nb2container_original__"


@dataclass
class Call:
    execution_count: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    replayable: bool
    result: Any = None
    result_text: str | None = None
    reason: str = ""


@dataclass
class CallRecorder:
    shell: Any
    function: str
    limit: int = 200
    calls: list[Call] = field(default_factory=list)
    total: int = 0
    files: FileWatch = field(default_factory=FileWatch)

    def install(self) -> None:
        self.shell.user_ns[RECORDER_NAME] = self
        self.shell.ast_transformers.append(_RebindAfterDef(self.function))
        self.shell.events.register("post_run_cell", self._after_cell)
        self._wrap_namespace()

    def wrap(self, fn: Any) -> Any:
        """The recording twin of ``fn``; the original stays reachable for capture."""
        if not callable(fn) or hasattr(fn, ORIGINAL_ATTR):
            return fn
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def recorded_async(*args: Any, **kwargs: Any) -> Any:
                with self.files:
                    result = await fn(*args, **kwargs)
                self._record(args, kwargs, result)
                return result

            wrapper: Any = recorded_async
        else:

            @functools.wraps(fn)
            def recorded(*args: Any, **kwargs: Any) -> Any:
                with self.files:
                    result = fn(*args, **kwargs)
                self._record(args, kwargs, result)
                return result

            wrapper = recorded
        setattr(wrapper, ORIGINAL_ATTR, fn)
        return wrapper

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(call) for call in self.calls]

    def _after_cell(self, result: Any) -> None:
        # Calls are stamped here, from IPython's own ExecutionResult: reading
        # shell.execution_count during a cell differs between IPython versions.
        for call in self.calls:
            if call.execution_count is None:
                call.execution_count = getattr(result, "execution_count", None)
        self.files.stamp(getattr(result, "execution_count", None))
        self._wrap_namespace()

    def _wrap_namespace(self, *_: Any) -> None:
        ns = self.shell.user_ns
        if self.function in ns:
            ns[self.function] = self.wrap(ns[self.function])

    def _record(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        self.total += 1
        if len(self.calls) >= self.limit:
            return
        call = Call(None, [], {}, replayable=True)
        try:
            call.args = to_jsonable(list(args))
            call.kwargs = to_jsonable(kwargs)
        except (TypeError, ValueError) as exc:
            call.replayable, call.reason = False, f"an argument cannot be sent as JSON: {exc}"
        try:
            call.result = to_jsonable(result)
        except (TypeError, ValueError) as exc:
            call.replayable, call.reason = False, f"the result has no JSON form: {exc}"
        call.result_text = _display_text(self.shell, result)
        self.calls.append(call)


def _display_text(shell: Any, value: Any) -> str | None:
    """The text/plain IPython would show for ``value`` as a cell's result."""
    try:
        data, _ = shell.display_formatter.format(value)
        return data.get("text/plain")
    except Exception:
        return repr(value)


class _RebindAfterDef(ast.NodeTransformer):
    """After a top-level ``def NAME``, insert ``NAME = __nb2container_recorder__.wrap(NAME)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def visit_Module(self, node: ast.Module) -> ast.Module:
        body: list[ast.stmt] = []
        for stmt in node.body:
            body.append(stmt)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == self.name:
                rebind = ast.parse(f"{self.name} = {RECORDER_NAME}.wrap({self.name})").body[0]
                body.append(ast.copy_location(rebind, stmt))
        node.body = body
        return ast.fix_missing_locations(node)
