"""``%load_ext nb2container`` and ``%containerize``: build from the live kernel.

The capture runs here, in the kernel, on ``get_ipython().user_ns``: the model as it is in
memory, nothing re-executed. It is the same kernel code the CLI runs in its fresh kernel
(``kernel.capture.capture_to_file``) and the same host code reads it (``captured``), so both
entry points give the same module, artifacts and lock. Calls are recorded from the moment
the extension loads; calls made before that are read back from the kernel's history and
``Out`` when their arguments are literals.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import nbformat
from IPython.core import magic_arguments
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, line_magic, magics_class

from nb2container import background, config, pipeline, runs
from nb2container.background import BuildHandle
from nb2container.captured import example_from_call, read_raw
from nb2container.display import Containerized, NotebookProgress
from nb2container.errors import Nb2ContainerError
from nb2container.kernel import ORIGINAL_ATTR, RECORDER_NAME, recheck
from nb2container.kernel.capture import capture_to_file
from nb2container.kernel.recorder import CallRecorder, display_text, make_call
from nb2container.kernel.request import CAPTURING_ENV
from nb2container.model import Capture, Example, cell_label
from nb2container.notebook import capture_from, read_notebook
from nb2container.options import Options, flags_for, given_flags
from nb2container.progress import Progress, TerminalProgress


def load(shell: Any) -> None:
    """Record calls from now on (unless the CLI's recorder is already in place) and register the magic."""
    if RECORDER_NAME not in shell.user_ns:
        CallRecorder(shell, None).install()
    shell.register_magics(ContainerizeMagics)


def _with_shared_flags(function: Any) -> Any:
    """Declare the magic's arguments from the table the CLI uses (options.FLAGS)."""
    for flag in reversed(flags_for("magic")):
        function = magic_arguments.argument(*flag.names, **flag.argparse_kwargs())(function)
    function = magic_arguments.argument("function", help="the notebook function to serve")(function)
    return magic_arguments.magic_arguments()(function)


@magics_class
class ContainerizeMagics(Magics):
    @line_magic
    @_with_shared_flags
    def containerize(self, line: str) -> Containerized | BuildHandle | SkippedBuild:
        """Build a container image that serves FUNCTION, from this kernel, and check it.

        Captures the function and everything it uses (helpers, classes, the objects in
        memory, files it reads), freezes this kernel's exact Python and packages, renders a
        build folder, builds the image, runs it, and replays the calls you made to the
        function in this notebook against it.

        The capture holds the kernel for seconds; the rest runs in a process of its own, so
        other cells run meanwhile, while this cell shows the steps and then the verdict. It
        returns a handle at once: ``.wait()`` returns the result (the image tag and the
        report), ``.done``, ``.ok``, ``.image`` and ``.report`` say where it stands, and
        ``.cancel()`` stops it. ``--wait`` holds the kernel until the verdict instead.
        ``nb2container runs`` lists every build.

        Example::

            %load_ext nb2container
            build = %containerize predict --tag churn:1.0
            build.wait().image
        """
        try:  # split like a shell, so that quoted JSON (--example '{"x": 1}') arrives whole
            argv = shlex.split(line)
        except ValueError as exc:
            raise IPythonUsageError(f"%containerize could not read its arguments: {exc}.") from None
        args = self.containerize.parser.parse_args(argv)  # type: ignore[union-attr]  # set by magic_arguments
        if os.environ.get(CAPTURING_ENV):
            print(f"%containerize {args.function}: skipped, because `nb2container build` is "
                  "running this notebook to build it.")
            return SkippedBuild()
        shell = self.shell
        notebook = notebook_path(shell)
        try:  # the notebook's configuration file, the environment, then these flags (config.py)
            options = config.resolve(given_flags(args), notebook.parent if notebook else Path.cwd(),
                                     notebook=notebook, function=args.function).options
        except Nb2ContainerError as error:
            raise IPythonUsageError(str(error)) from None
        jupyter = type(shell).__name__ == "ZMQInteractiveShell"
        function = str(options.function)
        underway = runs.running(options.notebook, function, options.runs_dir)
        if underway is not None:
            raise IPythonUsageError(
                f"`{function}` is already being built from this notebook (run {underway.id}, started "
                f"{underway.started[11:19]} UTC): wait for it (`.wait()` on the handle %containerize returned) "
                "or stop it (`.cancel()`), then containerize again.")
        shown: Any = NotebookProgress() if jupyter else TerminalProgress(sys.stdout)
        with runs.recorded(options.notebook, function, "magic", shown, options.runs_dir) as progress:
            try:
                if options.wait or not jupyter:
                    report = pipeline.run(options, progress, live_capturer(shell, options, progress))
                else:
                    return self._in_background(options, progress, shown)
            except Nb2ContainerError as error:
                if jupyter:
                    shown.finish(ok=False)
                progress.run.fail(str(error))
                if options.debug:
                    raise
                raise IPythonUsageError(str(error)) from None
            progress.run.finish(report)
        result = Containerized(report, shown.lines)
        if jupyter:
            shown.finish(ok=result.ok)
        return result

    def _in_background(self, options: Options, progress: runs.RecordedProgress, shown: Any) -> BuildHandle:
        """Capture here, then hand the rest to a build process; the cell's display follows it."""
        from IPython.display import display

        staging = Path(tempfile.mkdtemp(prefix="nb2container-capture-"))
        process = background.launch()
        try:
            capture = live_capturer(self.shell, options, progress)(staging)
        except BaseException:
            background.abandon(process)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        summary = display({"text/plain": ""}, raw=True, display_id=True)
        return background.start(process, options, capture, staging, progress.run, shown, summary)


class SkippedBuild:
    """What %containerize gives while `nb2container build` runs the notebook: a build that did not
    happen, so that the notebook's own `build.wait()` runs there too."""

    done, ok, image, report = True, None, None, None

    def wait(self, timeout: float | None = None) -> None:
        return None

    def cancel(self) -> None:
        return None

    def __repr__(self) -> str:
        return "%containerize was skipped (nb2container build runs this notebook)"


def notebook_path(shell: Any) -> Path | None:
    """The notebook file this kernel serves, when the front end says (Jupyter, VS Code)."""
    candidates = (shell.user_ns.get("__session__"), os.environ.get("JPY_SESSION_NAME"),
                  shell.user_ns.get("__vsc_ipynb_file__"))
    for candidate in candidates:
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def live_capturer(shell: Any, options: Options, progress: Progress) -> pipeline.Capturer:
    function = str(options.function)
    options.capture_request(function, Path())  # a bad --example is refused now

    def capture(staging: Path) -> Capture:
        progress.step(f"Capturing `{function}` from this kernel")
        recorder = shell.user_ns.get(RECORDER_NAME)
        before = recorder.installed_at if recorder is not None else sys.maxsize
        capture_to_file(shell.user_ns, options.capture_request(function, staging),
                        history_calls(shell, function, before))
        raw = read_raw(staging, "")
        recheck.calls_now(shell, function, raw)  # what the user saw against what the kernel gives now
        saved = read_notebook(options.notebook) if options.notebook else None
        history = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(c) for c in shell.history_manager.input_hist_raw[1:]])
        return capture_from(raw, staging, notebook=options.notebook, saved=saved, cells=saved or history,
                            examples=[_live_example(shell, call) for call in raw["calls"]],
                            place=lambda count: cell_label(None, count))

    return capture


def _live_example(shell: Any, call: dict[str, Any]) -> Example:
    """A recorded call, judged like a saved notebook's: what the user saw is the saved output
    (``Out[n]`` when the call was its cell's value, else its recorded result), and what the
    function gives on the kernel's state now is the fresh run (``recheck``)."""
    now = call.get("now")
    if now is not None:  # what the user saw when the call ran, against what the kernel gives now
        return example_from_call({**call, **now}, 0, call["result_text"], call["stdout"] or None)
    out = shell.user_ns.get("Out", {})
    count = call["execution_count"]
    shown = display_text(shell, out[count]) if count in out else None
    stored_text = shown if shown is not None and shown == call["result_text"] else None
    return replace(example_from_call(call, 0, stored_text),
                   unchecked="it could not be made again on the kernel's state, and its result was not its "
                             "cell's output")


def history_calls(shell: Any, function: str, before: int) -> list[dict[str, Any]]:
    """Calls made before recording began: cells whose value was ``function(literals...)``."""
    out = shell.user_ns.get("Out", {})
    calls = []
    for count, source in enumerate(shell.history_manager.input_hist_parsed[:before], start=0):
        if count not in out:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        last = tree.body[-1] if tree.body else None
        if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                and isinstance(last.value.func, ast.Name) and last.value.func.id == function):
            continue
        try:
            args = [ast.literal_eval(a) for a in last.value.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in last.value.keywords if k.arg}
        except ValueError:
            continue  # arguments that are not literals cannot be read back
        fn = shell.user_ns.get(function)
        if fn is None:
            continue
        call = make_call(shell, getattr(fn, ORIGINAL_ATTR, fn), args, kwargs, out[count])
        call.execution_count = count
        calls.append(asdict(call))
    return calls
