"""The kernel-side capture on real namespaces (code executed as cells would be)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from nb2container.kernel.capture import Refusal, capture, global_names
from nb2container.kernel.pickles import dump, modules_in_pickle


def run_cells(*cells: str) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "__main__", "In": ["", *cells]}
    for cell in cells:
        exec(compile(cell, "<cell>", "exec"), ns)
    return ns


def test_global_names_sees_comprehensions_lambdas_and_defaults() -> None:
    source = (
        "def f(x, scale=SCALE):\n"
        "    ys = [helper(v) for v in x]\n"
        "    key = lambda v: WEIGHTS[v]\n"
        "    local = 1\n"
        "    return sorted(ys, key=key), local\n"
    )
    assert set(global_names(source)) == {"SCALE", "helper", "WEIGHTS", "sorted"}


def test_capture_follows_helpers_constants_aliases_and_artifacts(tmp_path: Path) -> None:
    ns = run_cells(
        "import json as js\nfrom math import sqrt as root\nimport collections",
        "THRESHOLD = 0.5\nTABLE = {'a': 1, 'b': 2}",
        "counts = collections.Counter('abracadabra')",
        "def helper(v):\n    return root(v) * THRESHOLD",
        "def score(word, scale=2):\n    return js.dumps([helper(counts[c]) * scale for c in word]) + str(TABLE)",
    )
    captured = capture(ns, "score", str(tmp_path))
    assert captured["imports"] == ["from math import sqrt as root", "import json as js"]
    assert dict(captured["constants"]) == {"THRESHOLD": "0.5", "TABLE": "{'a': 1, 'b': 2}"}
    assert [a["name"] for a in captured["artifacts"]] == ["counts"]
    assert captured["definitions"][0].startswith("def helper(v):")
    assert captured["definitions"][-1].startswith("def score(word, scale=2):")
    with open(tmp_path / "counts.pkl", "rb") as handle:
        assert pickle.load(handle) == ns["counts"]


def test_unknown_function_lists_candidates(tmp_path: Path) -> None:
    ns = run_cells("def predict(x):\n    return x", "def helper():\n    pass")
    with pytest.raises(Refusal) as refusal:
        capture(ns, "nosuch", str(tmp_path))
    assert refusal.value.details["candidates"] == ["helper", "predict"]


def test_name_defined_nowhere_is_refused_by_name(tmp_path: Path) -> None:
    ns = run_cells("def predict(x):\n    return x * undefined_scale")
    with pytest.raises(Refusal, match="undefined_scale"):
        capture(ns, "predict", str(tmp_path))


def test_unpicklable_global_is_refused_by_name(tmp_path: Path) -> None:
    ns = run_cells("import threading\nlock = threading.Lock()",
                   "def predict(x):\n    with lock:\n        return x")
    with pytest.raises(Refusal, match="`lock`"):
        capture(ns, "predict", str(tmp_path))


def test_modules_in_pickle_reads_stack_globals_without_loading() -> None:
    from collections import OrderedDict
    from decimal import Decimal

    data = pickle.dumps([OrderedDict(a=Decimal("1.5"))], protocol=5)
    assert {"collections", "decimal"} <= modules_in_pickle(data)
    assert modules_in_pickle(pickle.dumps([1, "x"], protocol=2)) == set()


def test_notebook_classes_are_pickled_by_value() -> None:
    ns = run_cells("class Scaler:\n    def __init__(self, k):\n        self.k = k", "s = Scaler(3)")
    data, fmt = dump(ns["s"])
    assert fmt == "cloudpickle"
    assert "__main__" not in modules_in_pickle(data)
