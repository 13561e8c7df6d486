"""The magic's stale rule: each call the user made, made again on the kernel's state now.

In a live kernel, a recorded call's result is what the user saw when the cell ran. If the
model was retrained or a global changed since, the image (captured from memory now) answers
differently: that is a stale output, as in a saved notebook, not a container mismatch. Each
replayable call is made again here, its arguments restored from its request the way the
server restores them, and its answer now is kept beside the recorded one (``call["now"]``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
from typing import Any

from nb2container.kernel import ORIGINAL_ATTR
from nb2container.kernel.jsonable import to_jsonable
from nb2container.kernel.recorder import display_text
from nb2container.runtime import codecs


def calls_now(shell: Any, function: str, raw: dict[str, Any], key: str = "now") -> None:
    """Add ``now`` (result, result_text, stdout) to each replayable call in ``raw["calls"]``.

    The CLI's kernel asks the same right after the run, as ``again``: a call that answers
    differently the second time shows a random function (unseeded), one cause of stale outputs."""
    ns = shell.user_ns
    fn = ns.get(function)
    fn = getattr(fn, ORIGINAL_ATTR, fn)
    if fn is None or inspect.iscoroutinefunction(fn):
        return
    params = raw["interface"]["codecs"]["params"]
    bound = {name: ns[holder] for name, holder in raw["interface"]["bound"].items() if holder in ns}
    names = list(inspect.signature(fn).parameters)
    for call in raw["calls"]:
        if not call.get("replayable") or "body" not in call or call.get("source") != "cell":
            continue
        body = call["body"]
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):  # the user saw it print once already
                if isinstance(body, list):
                    value = fn(*[codecs.decode(params.get(n, {}), v) for n, v in zip(names, body, strict=False)])
                else:
                    arguments = {n: codecs.decode(params.get(n, {}), v) for n, v in body.items()}
                    value = fn(**arguments, **bound)
            call[key] = {"result": to_jsonable(value), "result_text": display_text(shell, value),
                         "stdout": printed.getvalue()}
        except Exception:  # a call that fails now is judged by the smoke test, against what it recorded
            continue
