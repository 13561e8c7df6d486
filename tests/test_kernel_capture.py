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


def test_definitions_inside_code_running_magics_are_found() -> None:
    from nb2container.kernel.capture import definitions_in_cells

    cells = ["get_ipython().run_cell_magic('time', '', 'def timed():\\n    return 1\\n')",
             "get_ipython().run_cell_magic('bash', '', 'def not_python():\\n')",
             "@decorate\nclass Late:\n    pass"]
    found = definitions_in_cells(cells)
    assert set(found) == {"timed", "Late"}
    assert found["Late"][1].startswith("@decorate\nclass Late:")


def test_definition_time_names_are_what_a_def_evaluates() -> None:
    from nb2container.kernel.capture import definition_time_names

    source = ("@register(REGISTRY)\ndef f(x, table=centroids, *, k=K) -> Out:\n    return model(x)\n\n"
              "class C(Base, metaclass=Meta):\n    size = SIZE\n\n"
              "    def m(self, d=DEFAULT):\n        return body_only\n")
    assert definition_time_names(source) == {"register", "REGISTRY", "centroids", "K", "Out", "Base",
                                             "Meta", "SIZE", "DEFAULT"}


def test_artifact_used_as_a_default_loads_before_the_definitions(tmp_path: Path) -> None:
    pytest.importorskip("joblib", reason="numpy arrays are saved with joblib (the notebooks' extra)")
    pytest.importorskip("numpy", reason="the notebooks' extra")
    ns = run_cells("import numpy as np\ntable = np.arange(4)",
                   "def predict(i, values=table):\n    return int(values[i]) + len(extra)",
                   "extra = [object()]")
    captured = capture(ns, "predict", str(tmp_path / "artifacts"))
    by_name = {a["name"]: a for a in captured["artifacts"]}
    assert by_name["table"]["at_definition"] and by_name["table"]["format"] == "joblib"
    assert not by_name["extra"]["at_definition"] and by_name["extra"]["format"] == "pickle"


def test_ipythons_stand_in_for_a_builtin_is_not_shipped(tmp_path: Path) -> None:
    import builtins
    import functools

    ns = run_cells("def predict(path):\n    with open(path) as f:\n        return f.read()")
    ns["open"] = functools.wraps(builtins.open)(lambda *a, **k: builtins.open(*a, **k))  # noqa: SIM115
    captured = capture(ns, "predict", str(tmp_path / "artifacts"))
    assert captured["artifacts"] == [] and captured["globals_read"] == []


def test_file_watch_sees_reads_and_writes_only_inside_calls(tmp_path: Path) -> None:
    from nb2container.kernel.files import FileWatch

    data, out = tmp_path / "vocab.txt", tmp_path / "log.txt"
    data.write_text("a\nb\n")
    watch = FileWatch()
    data.read_text()  # outside a call: not recorded
    with watch:
        data.read_text()
        out.write_text("x")
    watch.stamp(7)
    uses = {(u["written"], u["writes"], u["execution_count"]) for u in watch.as_dicts()}
    assert uses == {(str(data), False, 7), (str(out), True, 7)}


def test_data_files_keep_the_path_the_code_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2container.kernel.files import collect, image_path, named_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "words.txt").write_text("w")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"k": 1.5}, protocol=5))
    assert image_path("data/words.txt") == "/srv/notebook/data/words.txt"
    assert image_path("../shared/x.csv") == "/srv/shared/x.csv"
    assert image_path("/opt/data/x.csv") == "/opt/data/x.csv"
    named = named_files(["def f():\n    return open('data/words.txt').read() + 'not a file'"],
                        {"MODEL": "model.pkl", "OTHER": ["nope.txt"]})
    assert named == ["data/words.txt", "model.pkl"]
    shipped, warnings = collect([{"written": "out.txt", "absolute": str(tmp_path / "out.txt"),
                                  "writes": True, "execution_count": 3}], named, tmp_path / "files", 10**6)
    assert [f["image_path"] for f in shipped] == ["/srv/notebook/data/words.txt", "/srv/notebook/model.pkl"]
    assert (tmp_path / "files/srv/notebook/data/words.txt").read_text() == "w"
    assert "`out.txt`" in warnings[0] and "/tmp" in warnings[0]


def test_joblib_files_are_scanned_for_the_modules_they_need(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib", reason="the notebooks' extra")
    np = pytest.importorskip("numpy", reason="the notebooks' extra")

    from nb2container.kernel.pickles import modules_in_file

    joblib.dump({"weights": np.ones(1000)}, tmp_path / "model.pkl")
    assert {"numpy", "joblib"} <= modules_in_file(tmp_path / "model.pkl")
    (tmp_path / "notes.txt").write_text("just text")
    assert modules_in_file(tmp_path / "notes.txt") == set()


def test_a_data_file_whose_packages_cannot_be_read_is_a_warning_not_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2container.kernel.files import collect
    from nb2container.kernel.pickles import UnreadableData, modules_in_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"k": 1.5}, protocol=5)[:-9])  # truncated
    with pytest.raises(UnreadableData):
        modules_in_file(tmp_path / "model.pkl")
    shipped, warnings = collect([], ["model.pkl"], tmp_path / "files", 10**6)
    assert [f["image_path"] for f in shipped] == ["/srv/notebook/model.pkl"]  # still shipped
    assert len(warnings) == 1 and "model.pkl" in warnings[0] and "could not read which packages" in warnings[0]
