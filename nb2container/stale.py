"""Saved outputs the notebook's code no longer gives (STALE), and the cause the evidence names.

A stale output fails the build: the image would not be what the data scientist validated. What
to do depends on why, so the message names what the tool can see: the notebook was saved on
another Python (its metadata says which), a type moved between modules (pandas 3 prints
``pandas.DataFrame`` where pandas 2 printed ``pandas.core.frame.DataFrame``: other package
versions), a function that answers differently each time it is called (the fresh run makes each
call twice), or else a change to the code or data, or unseeded training.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from nb2container.model import Capture, SmokeCase
from nb2container.options import Options
from nb2container.report import stale_values, where_label
from nb2container.smoke import smoke_case

_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")


def cases(capture: Capture, options: Options) -> list[SmokeCase]:
    """The calls whose saved output is not what the notebook's code gives now (known before any build)."""
    return [case for example in capture.examples
            if (case := smoke_case(example, capture.spec.function, options.rel_tol, options.abs_tol)).stale]


def message(outdated: list[SmokeCase], capture: Capture, building: bool) -> str:
    calls = "; ".join(f"{where_label(case)}: {case.call} shows {stale_values(case, 60)[0]}, its code "
                      f"now gives {stale_values(case, 60)[1]}" for case in outdated[:5])
    more = f" (and {len(outdated) - 5} more)" if len(outdated) > 5 else ""
    verdict = ("so the image would not be what you validated, and nothing was built. " if building else
               "so an image of it is not what you validated. ")
    random = [case for case in outdated if case.repeats is False]
    causes = [*_other_python(capture), *_moved_types(outdated)]
    if random:
        why = (f"{where_label(random[0])}: {random[0].call} answered differently when it was made again right "
               "after the fresh run, so the function itself uses randomness that is not seeded, and no saved "
               f"output can be reproduced; {verdict}Seed it (random_state=..., np.random.default_rng(0), "
               "torch.manual_seed(0)) or take the randomness out of the served function, then Restart & Run All "
               "and save the notebook.")
    elif causes:
        why = (" ".join(causes) + f" {verdict}Re-run the notebook in this kernel (Restart & Run All), check "
               "its outputs and save it, or build from a kernel with the environment it was saved in.")
    else:
        why = ("Either the outputs were saved before a change to the code or the data, or training is not "
               "seeded (no random_state or seed), so a fresh run trains a different model than the one whose "
               f"outputs you checked; {verdict}Seed the training if it is random, then Restart & Run All and "
               "save the notebook.")
    return (f"{capture.notebook_name} does not reproduce its own saved outputs: {calls}{more}. {why} To ship "
            "what the code gives now anyway, build with --allow-stale (the report, the image's labels and its "
            "README record it).")


def saved_python(notebook: Path | None) -> str | None:
    """The Python the notebook was last saved from, as its metadata records it."""
    if notebook is None:
        return None
    try:
        info = nbformat.read(notebook, as_version=4).metadata.get("language_info", {})
    except (OSError, ValueError):
        return None
    version = info.get("version") if info.get("name", "python") == "python" else None
    return str(version) if version else None


def _other_python(capture: Capture) -> list[str]:
    saved, now = saved_python(capture.notebook), capture.interpreter.python_version
    if not saved or saved == now:
        return []
    return [f"The notebook was saved on Python {saved}, and this kernel runs Python {now}: its outputs come "
            "from another interpreter and, most likely, other package versions;"]


def _moved_types(outdated: list[SmokeCase]) -> list[str]:
    """A dotted name that the saved output and the fresh one end alike but spell differently."""
    for case in outdated:
        saved = set(_DOTTED.findall(str(case.stored)))
        fresh = set(_DOTTED.findall(str(case.expected)))
        for old in sorted(saved - fresh):
            new = next((name for name in sorted(fresh - saved) if name.rsplit(".", 1)[1] == old.rsplit(".", 1)[1]),
                       None)
            if new:
                return [f"In {where_label(case)} the saved output names `{old}` where this kernel gives "
                        f"`{new}`: the outputs were saved under other package versions than this kernel's;"]
    return []
