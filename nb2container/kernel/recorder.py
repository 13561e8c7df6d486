"""Record the calls the notebook's cells make to its functions.

Installed in the kernel before the first cell (the CLI, for the function it serves) or when
``%load_ext nb2container`` runs (the magic, for every function the notebook defines, since
the one to serve is named later). An AST transformer re-binds a function right after each
``def`` of it (so a cell that defines and calls it is recorded too), and a post-run hook
wraps functions bound some other way.

Only calls made by the cells themselves are recorded (from a cell's top level or a
comprehension in it, directly or through pandas or numpy mapping the function over values:
``df["text"].apply(classify)``, ``Series.map``, ``DataFrame.apply``), not calls from inside other
functions: those are the calls a person made and saw, and helpers called in a loop cost
nothing. Of the calls a cell makes through a library, the first ``MAPPED_SAMPLE`` distinct ones
are kept (a column of a thousand rows is a thousand calls). Each call keeps the execution count
of its cell, its arguments, and its result both as JSON and as the text IPython would
display. The files a call opens are watched too (``files.FileWatch``).
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import io
import sys
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from nb2container.kernel import ORIGINAL_ATTR, RECORDER_NAME
from nb2container.kernel.files import FileWatch
from nb2container.kernel.jsonable import to_jsonable
from nb2container.runtime import codecs

# Libraries whose frames stand between a cell and a function they map over values.
MAPPING_LIBRARIES = frozenset({"pandas", "numpy"})
MAPPED_SAMPLE = 5  # distinct calls kept per cell and function, of those made through a library
_MAPPED_TRIES = 50  # calls of a cell looked at for distinct ones, at most


@dataclass
class Call:
    function: str
    execution_count: int | None
    args: list[Any]  # JSON, None where an argument has no JSON form
    kwargs: dict[str, Any]
    replayable: bool
    result: Any = None
    result_text: str | None = None
    reason: str = ""
    source: str = "cell"  # "cell": the notebook made it; "example": given with --example
    shown: str = ""  # the call as a person reads it: f(3, dv, model)
    arguments: dict[str, Any] = field(default_factory=dict)  # parameter -> JSON value (JSON-able ones)
    codecs: dict[str, dict[str, Any]] = field(default_factory=dict)  # parameter -> codec
    object_ids: dict[str, int] = field(default_factory=dict)  # parameter -> id() of an object with no JSON form
    result_codec: dict[str, Any] = field(default_factory=lambda: {"kind": "json"})
    stdout: str = ""  # what the call printed
    no_json: str = ""  # an argument or the result JSON cannot carry: the build is refused, naming it
    via: str = ""  # the library method the cell called, which called the function ("Series.apply")


class _Tee(io.TextIOBase):
    """Writes to the kernel's stdout (the user still sees it) and to a buffer."""

    def __init__(self, real: Any, copy: io.StringIO) -> None:
        self.real, self.copy = real, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return int(self.real.write(text) or len(text))

    def flush(self) -> None:
        self.real.flush()


@contextlib.contextmanager
def printed_during() -> Iterator[io.StringIO]:
    copy, real = io.StringIO(), sys.stdout
    sys.stdout = _Tee(real, copy)
    try:
        yield copy
    finally:
        sys.stdout = real


@dataclass
class CallRecorder:
    shell: Any
    function: str | None  # None: every function the notebook defines
    limit: int = 200  # calls kept per function
    calls: list[Call] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    files: FileWatch = field(default_factory=FileWatch)
    installed_at: int = 0  # the execution count when recording began
    objects: dict[int, Any] = field(default_factory=dict)  # arguments with no JSON form, kept alive by id
    errors: list[str] = field(default_factory=list)  # nb2container's own failures to record a call
    mapped_tries: dict[str, int] = field(default_factory=dict)  # function -> mapped calls of this cell seen

    def install(self) -> None:
        self.shell.user_ns[RECORDER_NAME] = self
        self.installed_at = int(getattr(self.shell, "execution_count", 0) or 0)
        self.shell.ast_transformers.append(_RebindAfterDef(self.function))
        self.shell.events.register("post_run_cell", self._after_cell)
        self._wrap_namespace()

    def wrap(self, fn: Any) -> Any:
        """The recording twin of ``fn``; the original stays reachable for capture."""
        if not inspect.isfunction(fn) or ORIGINAL_ATTR in fn.__dict__ or inspect.isgeneratorfunction(fn):
            return fn
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def recorded_async(*args: Any, **kwargs: Any) -> Any:
                via = self._origin(sys._getframe(1))
                if via is None or not self._sampling(fn.__name__, via):
                    return await fn(*args, **kwargs)
                with self.files, printed_during() as printed:
                    result = await fn(*args, **kwargs)
                self._record(fn, args, kwargs, result, printed.getvalue(), via)
                return result

            wrapper: Any = recorded_async
        else:

            @functools.wraps(fn)
            def recorded(*args: Any, **kwargs: Any) -> Any:
                via = self._origin(sys._getframe(1))
                if via is None or not self._sampling(fn.__name__, via):
                    return fn(*args, **kwargs)
                with self.files, printed_during() as printed:
                    result = fn(*args, **kwargs)
                self._record(fn, args, kwargs, result, printed.getvalue(), via)
                return result

            wrapper = recorded
        setattr(wrapper, ORIGINAL_ATTR, fn)
        return wrapper

    def _origin(self, frame: types.FrameType | None) -> str | None:
        """Who made a call: "" a cell, "Series.apply" a cell through that library method, None
        anything else (another function of the notebook, a library called from one)."""
        via = ""
        while frame is not None:
            if frame.f_globals is self.shell.user_ns:
                if frame.f_code.co_name == "<module>":  # a cell's own code
                    return via
                if not frame.f_code.co_name.startswith("<"):  # a function of the notebook
                    return None
                # a comprehension or lambda of a cell's: whoever runs it decides
            elif str(frame.f_globals.get("__name__", "")).split(".")[0] in MAPPING_LIBRARIES:
                via = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)  # the outermost: what the cell called
            else:
                return None
            frame = frame.f_back
        return None

    def _sampling(self, function: str, via: str) -> bool:
        """Whether to record a call: every one a cell makes itself; of those it makes through a
        library, until MAPPED_SAMPLE distinct ones are kept (the rest are counted only)."""
        if not via:
            return True
        self.totals[function] = self.totals.get(function, 0) + 1
        tries = self.mapped_tries[function] = self.mapped_tries.get(function, 0) + 1
        return len(self._mapped_in_this_cell(function)) < MAPPED_SAMPLE and tries <= _MAPPED_TRIES

    def _mapped_in_this_cell(self, function: str) -> list[Call]:
        """The calls of ``function`` kept from the running cell that came through a library."""
        return [c for c in self.calls if c.function == function and c.via and c.execution_count is None]

    def as_dicts(self, function: str) -> list[dict[str, Any]]:
        return [asdict(call) for call in self.calls if call.function == function]

    def call_example(self, function: str, body: Any) -> dict[str, Any]:
        """Call ``function`` with a request body (--example) here, and return it as a call."""
        fn = self.shell.user_ns[function]
        fn = getattr(fn, ORIGINAL_ATTR, fn)
        args, kwargs = (list(body), {}) if isinstance(body, list) else ([], dict(body))
        with printed_during() as printed:
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):  # the kernel's own loop is running: use another thread
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    result = pool.submit(asyncio.run, result).result()
        call = make_call(self.shell, fn, args, kwargs, result, printed.getvalue(), self.objects)
        call.source = "example"
        return asdict(call)

    def _after_cell(self, result: Any) -> None:
        # Calls are stamped here, from IPython's own ExecutionResult: reading
        # shell.execution_count during a cell differs between IPython versions.
        count = getattr(result, "execution_count", None)
        for call in self.calls:
            if call.execution_count is None:
                call.execution_count = count
        self.mapped_tries.clear()
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

    def _record(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, stdout: str,
                via: str = "") -> None:
        """Never fails the user's cell: an error here is nb2container's, reported at capture."""
        function = fn.__name__
        if not via:  # a mapped call was counted when it was sampled
            self.totals[function] = self.totals.get(function, 0) + 1
        kept = sum(1 for c in self.calls if c.function == function)
        if kept < self.limit:
            try:
                call = make_call(self.shell, fn, list(args), kwargs, result, stdout, self.objects)
                if via:
                    call.via, call.shown = via, f"{call.shown} through {via}"
                if via and any((c.args, c.kwargs) == (call.args, call.kwargs)
                               for c in self._mapped_in_this_cell(function)):
                    return  # the same call again (a column of repeated values): one is enough
                self.calls.append(call)
            except Exception as exc:
                count = getattr(self.shell, "execution_count", None)
                self.errors.append(f"`{function}` in [{count}]: {type(exc).__name__}: {str(exc)[:200]}")


def make_call(
    shell: Any,
    fn: Any,
    args: list[Any],
    kwargs: dict[str, Any],
    result: Any,
    stdout: str = "",
    objects: dict[int, Any] | None = None,
) -> Call:
    """A call as recorded: each argument's codec and JSON form (or, with none, the object's
    identity, kept alive in ``objects`` so that capture can bind it), the result, what it printed."""
    call = Call(fn.__name__, None, [_json_or_none(a) for a in args],
                {k: _json_or_none(v) for k, v in kwargs.items()}, replayable=True, stdout=stdout)
    names = {id(v): k for k, v in shell.user_ns.items() if not k.startswith("_")}
    shown = [_shown(a, names) for a in args] + [f"{k}={_shown(v, names)}" for k, v in kwargs.items()]
    call.shown = f"{fn.__name__}({', '.join(shown)})"
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        call.replayable, call.reason = False, f"the arguments do not fit the signature: {exc}"
        bound = None
    for name, value in (bound.arguments.items() if bound else ()):
        codec = codecs.describe(value)
        call.codecs[name] = codec
        if codec["kind"] == "object":
            call.object_ids[name] = id(value)
            if objects is not None:
                objects[id(value)] = value
        else:
            try:
                call.arguments[name] = to_jsonable(value)
            except (TypeError, ValueError, RecursionError) as exc:
                call.no_json = f"the argument `{name}` ({_type_name(value)}) has no JSON form: {exc}"
                call.replayable, call.reason = False, call.no_json
    call.result_codec = codecs.describe(result)
    try:
        call.result = to_jsonable(result)
    except (TypeError, ValueError, RecursionError) as exc:
        call.no_json = f"the result ({_type_name(result)}) has no JSON form: {exc}"
        call.replayable, call.reason = False, call.no_json
    call.result_text = display_text(shell, result)
    return call


def _json_or_none(value: Any) -> Any:
    try:
        return to_jsonable(value)
    except (TypeError, ValueError, RecursionError):
        return None


def _type_name(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return f"{kind} of dtype {dtype}" if dtype is not None else kind


def _shown(value: Any, names: dict[int, str]) -> str:
    """An argument as the call showed it: a literal, or the notebook's name for the object."""
    kind = codecs.describe(value)["kind"]
    if id(value) in names and kind != "json":
        return names[id(value)]
    if kind == "dataframe":  # its repr is a table: a line of it reads as noise
        columns = ", ".join(str(c) for c in list(value.columns)[:4]) + (", ..." if value.shape[1] > 4 else "")
        return f"DataFrame({value.shape[0]} rows: {columns})"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def display_text(shell: Any, value: Any) -> str | None:
    """The text/plain IPython would show for ``value`` as a cell's result."""
    try:
        data, _ = shell.display_formatter.format(value)
        return data.get("text/plain")
    except Exception:  # the user's own formatter failed: IPython itself would show the repr
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
