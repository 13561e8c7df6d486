"""Every notebook in notebooks/ builds, and its image reproduces it (real kernels, real engine).

Together the notebooks cover what real notebooks do: helpers, classes with bases and
decorators, aliased imports, constants, lambdas and closures, defaults that are arrays,
files read at call time, IPython syntax, async functions with every kind of argument,
out-of-order cells and hidden globals.
"""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest

from nb2container.compare import difference
from tests.conftest import NOTEBOOKS, NotebookBuilds

ALL = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))

# What each notebook must show beyond a passing smoke test.
EXPECTED: dict[str, dict[str, Any]] = {
    "house_prices.ipynb": {"function": "predict_price", "formats": {"model": "joblib"}},
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
    "hidden_state.ipynb": {
        "function": "keyword_score",
        "formats": {"tokens": "cloudpickle"},  # defined by %run: no cell has its source
        "warnings": ["out of order", "`BONUS_WORDS`, `MIN_LENGTH`, `tokens`"],
    },
}

# Runs the generated module in the image's interpreter with nothing but it, the locked
# packages and the artifacts: no server, no network, isolated mode.
DRIVER = """
import asyncio, inspect, json, sys
sys.path.insert(0, "/app")
import notebook_function
from nb2c_server import to_json
fn = getattr(notebook_function, sys.argv[1])
answers = []
for body in json.loads(sys.argv[2]):
    result = fn(**body) if isinstance(body, dict) else fn(*body)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    answers.append(result)
print(json.dumps(answers, default=to_json))
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
    for warning in expected.get("warnings", []):
        assert any(warning in text for text in report["warnings"]), (warning, report["warnings"])
    if expected.get("no_warnings"):
        assert report["warnings"] == []
    module = (built.folder / "app/notebook_function.py").read_text()
    for fragment in expected.get("module", []):
        assert fragment in module
    assert "get_ipython" not in module  # no IPython syntax reaches the module


@pytest.mark.parametrize("notebook", ALL)
def test_generated_module_answers_like_the_notebook_in_a_fresh_interpreter(
    notebook: str, notebook_builds: NotebookBuilds, docker_client: docker.DockerClient
) -> None:
    built = notebook_builds(notebook)
    cases = built.report["smoke"]["cases"]
    output = docker_client.containers.run(
        built.tag, ["python", "-I", "-c", DRIVER, built.report["function"],
                    json.dumps([case["request"] for case in cases])],
        network_mode="none", remove=True,
    )
    answers = json.loads(bytes(output).decode())
    assert len(answers) == len(cases)
    for case, answer in zip(cases, answers, strict=True):
        assert difference(case["expected"], answer, 1e-6, 1e-9) is None, (case["call"], answer)
