"""Every notebook in notebooks/ builds, and its image reproduces it (real kernels, real engine).

Together the notebooks cover what real notebooks do: helpers, classes with bases and
decorators, aliased imports, constants, lambdas and closures, defaults that are arrays,
files read at call time, IPython syntax, async functions with every kind of argument,
out-of-order cells and hidden globals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from nb2container import lean
from nb2container.compare import difference, text_difference
from nb2container.runtime import codecs, contract
from tests.conftest import NOTEBOOKS, NotebookBuilds, run_cli

ALL = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))

# What each notebook must show beyond a passing smoke test.
EXPECTED: dict[str, dict[str, Any]] = {
    "house_prices.ipynb": {"function": "predict_price", "formats": {"model": "joblib"}},
    "serving_faults.ipynb": {"function": "score", "formats": {"calibration": "cloudpickle"}},
    "churn_helpers.ipynb": {
        "function": "churn_risk",
        "formats": {"encoder": "cloudpickle", "model": "joblib"},
        "module": ["@dataclass\nclass Customer:", "import numpy as np",
                   "from dataclasses import dataclass", "THRESHOLD = 0.5",
                   "def churn_risk(tenure_months, monthly_fee, plan='basic', threshold=THRESHOLD):"],
    },
    "sentiment_files.ipynb": {
        "function": "classify",
        "files": {"/srv/notebook/data/stopwords.txt", "/srv/notebook/models/sentiment.joblib"},
        "packages": {"scikit-learn", "joblib"},  # found inside the model file it loads
    },
    "ipython_magics.ipynb": {
        "function": "score",
        "module": ["def weight(word):", "def normalise(values):", "WORDS = ['alpha', 'beta', 'gamma']"],
        "no_warnings": True,
    },
    "async_signatures.ipynb": {
        "function": "predict",
        "module": ["async def predict(values, bias=0.0, *, scale=1.0, method='mean'):",
                   "import statistics as stats"],
    },
    "lookup_closures.ipynb": {
        "function": "assign",
        "formats": {"TRANSFORMS": "cloudpickle", "scaler": "cloudpickle", "centroids": "joblib"},
        "at_definition": {"centroids"},
    },
    "pandas_segments.ipynb": {
        "function": "segment_order",
        "formats": {"summary": "joblib"},
        "module": ["@functools.lru_cache(maxsize=128)\ndef region_baseline(region):"],
    },
    "containerize_magic.ipynb": {  # `nb2container build` skips its %containerize cell
        "function": "predict_progression",
        "formats": {"model": "joblib"},
    },
    "bound_model.ipynb": {  # the model and the vectorizer are arguments: bound, not sent
        "function": "predict_single",
        "formats": {"dv": "joblib", "model": "joblib"},
        "bound": {"dv": "dv", "model": "model"},
        "codecs": {"customer": "json", "dv": "object", "model": "object"},
    },
    "numpy_arrays.ipynb": {
        "function": "standardise",
        "formats": {"MEAN": "joblib", "STD": "joblib"},
        "codecs": {"x": "ndarray"}, "result": "ndarray",
    },
    "pandas_frames.ipynb": {
        "function": "order_values",
        "codecs": {"orders": "dataframe", "as_of": "datetime"}, "result": "series",
        "packages": {"pandas"},
    },
    "printed_report.ipynb": {"function": "report", "prints": True},
    "zero_arguments.ipynb": {"function": "model_card", "codecs": {}},
    "lightgbm_model.ipynb": {  # lib_lightgbm.so needs libgomp.so.1; LGBMRegressor needs sklearn (an extra)
        "function": "delivery_minutes",
        "formats": {"model": "pickle"},
        "packages": {"lightgbm", "scikit-learn"},
        "system_packages": {"libgomp1"},
    },
    "local_package.ipynb": {  # installed editable from notebooks/packages/pricing_rules: built here
        "function": "quote",
        "packages": {"pricing-rules"},
    },
    "varying_shapes.ipynb": {  # 1-D and 2-D arrays, int and float, frames of other columns: widened
        "function": "score", "codecs": {"w": "ndarray", "rows": "dataframe"}, "packages": {"numpy", "pandas"},
    },
    "numpy_types.ipynb": {  # extended precision, datetime64, timedelta64, object arrays: JSON forms
        "function": "summarise", "codecs": {"x": "json", "when": "json"},
    },
    "printed_calls.ipynb": {  # three calls print into one output, compared together
        "function": "predict", "prints": True, "module": ["LANGUAGES = ['Czech', 'Russian', 'English', 'Japanese']"],
    },
    "spam_apply.ipynb": {  # used only through Series.apply: its first 5 distinct calls are replayed
        "function": "classify", "codecs": {"sms": "json"}, "module": ["SPAM_WORDS = {"],
    },
    "series_or_list.ipynb": {  # a Series in one call, a list in another: each restored as it was passed
        "function": "total", "codecs": {"values": "union"}, "packages": {"pandas"},
    },
    "xgboost_crops.ipynb": {  # xgboost requires nvidia-nccl-cu12, which it needs only for training on GPUs
        "function": "recommend", "packages": {"xgboost-cpu"}, "formats": {"model": "pickle", "NAMES": "joblib"},
        "left_out": {"nvidia-nccl-cu12", "numpy/_core/tests", "scipy/stats/tests"},
    },
    "torch_digits.ipynb": {  # a PyTorch model: tensors in and out, torch 2.13.0's CPU build in the image
        "function": "predict", "codecs": {"pixels": "tensor"}, "result": "tensor", "packages": {"torch"},
        "formats": {"model": "pickle"},
    },
    "keras_spam.ipynb": {  # tensorflow.keras utilities, imported as the notebook did (not keras.src...)
        "function": "spam_probability", "packages": {"tensorflow-cpu", "keras"}, "formats": {"model": "pickle"},
        "module": ["from tensorflow.keras.preprocessing.sequence import pad_sequences"],
    },
    "hidden_state.ipynb": {
        "function": "keyword_score",
        "formats": {"tokens": "cloudpickle"},  # defined by %run: no cell has its source
        "warnings": ["out of order", "`BONUS_WORDS`, `MIN_LENGTH`, `tokens`"],
    },
}

# Runs the generated module in the image's interpreter with nothing but it, the locked
# packages and the artifacts: no server, no network, isolated mode.
DRIVER = """
import asyncio, contextlib, inspect, io, json, sys
sys.path.insert(0, "/app")
import notebook_function
import nb2c_codecs
spec = json.load(open("/app/spec.json"))
fn = getattr(notebook_function, spec["function"])
answers = []
for body in json.loads(sys.argv[1]):
    args, kwargs = ([], dict(body)) if isinstance(body, dict) else (list(body), {})
    kwargs.update({p: getattr(notebook_function, g) for p, g in spec["bound"].items()})
    call = inspect.signature(fn).bind(*args, **kwargs)
    for name, codec in spec["codecs"]["params"].items():
        if name in call.arguments and name not in spec["bound"]:
            call.arguments[name] = nb2c_codecs.decode(codec, call.arguments[name])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = fn(*call.args, **call.kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    answers.append({"result": result, "stdout": printed.getvalue()})
print(json.dumps(answers, default=nb2c_codecs.to_json))
"""


def test_every_notebook_is_covered() -> None:
    assert set(ALL) == set(EXPECTED), "add the new notebook's expectations to EXPECTED"


@pytest.mark.parametrize("notebook", ALL)
def test_notebook_builds_and_its_image_reproduces_it(notebook: str, notebook_builds: NotebookBuilds) -> None:
    built = notebook_builds(notebook)
    expected = EXPECTED[notebook]
    report, smoke = built.report, built.report["smoke"]
    assert report["function"] == expected["function"]
    assert smoke["health"] and smoke["failed"] == 0 and smoke["skipped"] == 0
    assert smoke["passed"] == len(smoke["cases"]) >= 2
    assert {a["name"]: a["format"] for a in report["artifacts"]} == expected.get("formats", {})
    assert {a["name"] for a in report["artifacts"] if a["at_definition"]} == expected.get("at_definition", set())
    assert {f["image_path"] for f in report["files"]} == expected.get("files", set())
    assert expected.get("packages", set()) <= set(report["packages"])
    assert set(report["system_packages"]) == expected.get("system_packages", set())
    assert not [name for name in report["packages"] if lean.GPU_ONLY.match(name)]  # no GPU on this machine
    assert "pytest" not in report["packages"]  # installed in this kernel, imported by no notebook
    left_out = {item["what"].split()[0] for item in report["left_out"]}
    assert expected.get("left_out", set()) <= left_out and not left_out & set(report["packages"])
    for warning in expected.get("warnings", []):
        assert any(warning in text for text in report["warnings"]), (warning, report["warnings"])
    if expected.get("no_warnings"):
        assert report["warnings"] == []
    interface = report["interface"]
    assert interface["bound"] == expected.get("bound", {})
    assert interface["prints"] == expected.get("prints", False)
    if "codecs" in expected:
        assert {p: c["kind"] for p, c in interface["codecs"]["params"].items()} == expected["codecs"]
    assert interface["codecs"]["result"]["kind"] == expected.get("result", "json")
    module = (built.folder / "app/notebook_function.py").read_text()
    for fragment in expected.get("module", []):
        assert fragment in module
    assert "get_ipython" not in module  # no IPython syntax reaches the module


def test_left_out_folders_are_not_in_the_image(notebook_builds: NotebookBuilds,
                                               docker_client: docker.DockerClient) -> None:
    built = notebook_builds("xgboost_crops.ipynb")
    suites = [item["what"] for item in built.report["left_out"] if "/" in item["what"]]
    check = "import json, os, sys; print(json.dumps([p for p in sys.argv[1:] if os.path.exists(p)]))"
    site = "/opt/venv/lib/python3.11/site-packages/"
    paths = [site + "numpy", *(site + suite for suite in suites)]
    output = docker_client.containers.run(built.tag, ["python", "-c", check, *paths], network_mode="none", remove=True)
    assert len(suites) > 20 and json.loads(bytes(output).decode()) == [site + "numpy"]


@pytest.mark.parametrize("notebook", ALL)
def test_generated_module_answers_like_the_notebook_in_a_fresh_interpreter(
    notebook: str, notebook_builds: NotebookBuilds, docker_client: docker.DockerClient
) -> None:
    built = notebook_builds(notebook)
    cases = built.report["smoke"]["cases"]
    output = docker_client.containers.run(
        built.tag, ["python", "-I", "-c", DRIVER, json.dumps([case["request"] for case in cases])],
        network_mode="none", remove=True,
    )
    answers = json.loads(bytes(output).decode())
    assert len(answers) == len(cases)
    for case, answer in zip(cases, answers, strict=True):
        assert difference(case["expected"], answer["result"], 1e-6, 1e-9) is None, (case["call"], answer)
        if case["expected_stdout"] is not None:
            assert text_difference(case["expected_stdout"], answer["stdout"], 1e-6, 1e-9) is None


@pytest.mark.parametrize("notebook", ALL)
def test_openapi_lists_the_codecs_and_the_notebooks_first_call(notebook: str, notebook_builds: NotebookBuilds) -> None:
    built = notebook_builds(notebook)
    document = json.loads((built.folder / "app/openapi.json").read_text())
    predict = document["paths"]["/predict"]["post"]
    content = predict["requestBody"]["content"]["application/json"]
    assert content["example"] == built.report["smoke"]["cases"][0]["request"]
    properties = content["schema"]["properties"]
    codecs = built.report["interface"]["codecs"]["params"]
    bound = built.report["interface"]["bound"]
    assert set(properties) == {name for name in codecs if name not in bound}
    for name, schema in properties.items():
        assert schema["x-nb2container-codec"] == codecs[name]
    assert not set(bound) & set(properties)  # bound parameters are the server's, not the request's
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["result"]["x-nb2container-codec"] == built.report["interface"]["codecs"]["result"]
    assert ("stdout" in answer["properties"]) == built.report["interface"]["prints"]


@pytest.mark.parametrize("notebook", ALL)
def test_every_recorded_call_fits_the_served_contract(notebook: str, notebook_builds: NotebookBuilds) -> None:
    """The property the contract is derived for: the notebook's own calls are all accepted by it
    (checked and restored as the server does), whatever shapes and types they disagree on."""
    built = notebook_builds(notebook)
    spec = json.loads((built.folder / "app/spec.json").read_text())
    schema = spec["request_schema"]
    names = list(schema["properties"])
    for case in built.report["smoke"]["cases"]:
        body = case["request"] if isinstance(case["request"], dict) else dict(zip(names, case["request"], strict=False))
        assert set(schema["required"]) <= set(body), case["call"]
        for name, value in body.items():
            contract.check(schema["properties"].get(name, {}), value, name)
            codecs.decode(spec["codecs"]["params"].get(name, {"kind": "json"}), value)


def test_how_each_saved_output_was_checked(notebook_builds: NotebookBuilds) -> None:
    checked = [case["checked"] for case in notebook_builds("printed_calls.ipynb").report["smoke"]["cases"]]
    assert checked[:4] == ["equal"] * 4  # three calls printing into one output, then one alone
    assert checked[4] == "not compared: what it printed is only part of its cell's output"
    assert notebook_builds("printed_calls.ipynb").report["smoke"]["not_compared"] == 1
    cases = notebook_builds("numpy_types.ipynb").report["smoke"]["cases"]
    assert cases[0]["expected"]["doubled"] == [2.0, 4.0, 6.0] and cases[0]["expected"]["next_day"] == "2024-05-02"
    assert cases[0]["expected"]["labels"] == ["low", "high", "high"] and cases[0]["expected"]["window"] == 90.0


def test_stale_printed_output_of_several_calls_fails_the_build(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "printed_calls.ipynb", as_version=4)
    (stream,) = nb.cells[3].outputs  # the loop: three calls, one output
    stream["text"] = stream["text"].replace("(-0.62) Japanese", "(-0.87) Czech")
    nbformat.write(nb, tmp_path / "printed_calls.ipynb")
    result = run_cli("build", tmp_path / "printed_calls.ipynb", "--output", tmp_path / "build",
                     "--report", tmp_path / "report.json")
    assert result.returncode == 1 and "Building the image" not in result.stderr
    stale = json.loads((tmp_path / "report.json").read_text())["stale"]
    # Only the call whose words changed is STALE, shown with both printed texts (issue 26).
    (case,) = stale["cases"]
    assert stale["count"] == 1 and case["stale_difference"].startswith("what it printed: word 1: expected '(-0.87)'")
    assert "the notebook shows \"printed: (-0.87) Czech\"" in result.stdout


def test_served_contract_restores_types_and_refuses_what_does_not_fit(notebook_builds: NotebookBuilds) -> None:
    from nb2container.engine import Engine, http_json

    engine = Engine()
    with engine.serve(notebook_builds("numpy_arrays.ipynb").tag, 8000) as running:
        status, answer = http_json("POST", running.url + "/predict", {"x": [[5.0, 5.0, 5.0]]})
        assert status == 200 and len(answer["result"][0]) == 3
        status, answer = http_json("POST", running.url + "/predict", {"x": "five"})
        assert status == 422 and answer["error"].startswith("`x` must be an array")
        status, answer = http_json("POST", running.url + "/predict", {"x": [1.0, 2.0, 3.0]})
        assert status == 422 and answer["error"].startswith("`x`[0] must be an array")  # 2 dimensions
    with engine.serve(notebook_builds("bound_model.ipynb").tag, 8000) as running:
        customer = {"contract": "monthly", "tenure": 3, "charges": 90.0}
        assert http_json("POST", running.url + "/predict", {"customer": customer}) == (200, {"result": 0.9541})
        assert http_json("POST", running.url + "/predict", [customer]) == (200, {"result": 0.9541})
        status, answer = http_json("POST", running.url + "/predict", {"customer": customer, "model": None})
        assert status == 422 and "`model` is supplied by the server" in answer["error"]
    with engine.serve(notebook_builds("printed_report.ipynb").tag, 8000) as running:
        status, answer = http_json("POST", running.url + "/predict", {"values": [1, 2]})
        assert (status, answer) == (200, {"result": None, "stdout": "n = 2\ntotal = 3.000\nmean = 1.5000\n"})
