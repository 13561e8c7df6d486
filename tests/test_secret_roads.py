"""Secrets that leave by other roads than source (issue 25), through the real command line and a
real kernel, no engine: data files of any encoding and size, values pickled in artifacts (derived
from a declared secret, or kept on a model's attribute), and the advice each refusal gives being
one that is accepted when followed."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import cli

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub's token format, which detect-secrets knows

pytestmark = pytest.mark.kernel


def notebook(folder: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "roads.ipynb"
    nbformat.write(nb, path)
    return path


def render(path: Path, *flags: str) -> tuple[int, str]:
    result = cli("render", path, "--function", "predict", "--output", path.parent / "out", *flags)
    assert "Traceback" not in result.stderr and TOKEN not in result.stdout + result.stderr
    return result.returncode, result.stderr


def reading(folder: Path, name: str) -> Path:
    return notebook(folder, f"def predict(city: str) -> str:\n    with open({name!r}, encoding='latin-1') as f:\n"
                            "        return str(city in f.read())", "predict('Zurich')")


def test_a_data_file_that_is_not_utf8_is_scanned(tmp_path: Path) -> None:
    (tmp_path / "services.csv").write_bytes(f"service,token,city\nprod,{TOKEN},Z\xfcrich\n".encode("latin-1"))
    code, said = render(reading(tmp_path, "services.csv"))
    assert code == 1 and "the data file services.csv, line 2" in said and not (tmp_path / "out").exists()


def test_a_data_file_over_2_mib_is_scanned(tmp_path: Path) -> None:
    rows = "".join(f"{i},svc{i},0.{i:06d}\n" for i in range(120_000))
    (tmp_path / "big.csv").write_text(f"id,service,score\n{rows}7,{TOKEN},0.5\n")
    assert (tmp_path / "big.csv").stat().st_size > 2 * 1024**2
    code, said = render(reading(tmp_path, "big.csv"))
    assert code == 1 and "the data file big.csv, line 120002" in said


def test_a_value_derived_from_a_declared_secret_is_refused_and_building_it_inside_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADS_TOKEN", TOKEN)
    derived = notebook(tmp_path, "import os\nfrom collections import OrderedDict\n"
                                 "API_TOKEN = os.environ['ROADS_TOKEN']",
                       "HEADERS = OrderedDict(Authorization='Bearer ' + API_TOKEN)",
                       "def predict(x: int) -> int:\n    return x + len(HEADERS) + len(API_TOKEN)", "predict(1)")
    code, said = render(derived, "--secret", "API_TOKEN")
    assert code == 1 and "the artifact `HEADERS`" in said and "--secret takes strings only" in said
    inside = notebook(tmp_path, "import os\nAPI_TOKEN = os.environ['ROADS_TOKEN']",
                      "def predict(x: int) -> int:\n    headers = {'Authorization': 'Bearer ' + API_TOKEN}\n"
                      "    return x + len(headers) + len(API_TOKEN)", "predict(1)")
    code, said = render(inside, "--secret", "API_TOKEN")  # the advice, followed
    assert code == 0, said
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_a_token_kept_on_a_pickled_model_is_refused_naming_it(tmp_path: Path) -> None:
    kept = notebook(tmp_path, "class Client:\n    def __init__(self):\n        self.api_key = " + repr(TOKEN) +
                    "\n        self.scale = 2", "client = Client()",
                    "def predict(x: int) -> int:\n    return x * client.scale", "predict(1)")
    code, said = render(kept)
    assert code == 1 and "the artifact `client`" in said and "--not-secret client" in said


def test_a_digest_named_so_is_not_a_secret_and_a_flagged_dict_takes_not_secret(tmp_path: Path) -> None:
    digest = notebook(tmp_path, "MODEL_SHA256 = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'",
                      "def predict(x: int) -> str:\n    return MODEL_SHA256[:x]", "predict(4)")
    assert render(digest)[0] == 0
    flagged = notebook(tmp_path, f"CONFIG = {{'url': 'https://example.com', 'token': {TOKEN!r}}}",
                       "def predict(x: int) -> int:\n    return x + len(CONFIG)", "predict(1)")
    code, said = render(flagged)
    assert code == 1 and "--not-secret CONFIG" in said
    assert render(flagged, "--not-secret", "CONFIG")[0] == 0  # the advice, followed


def test_pickled_names_and_the_folder_canary(tmp_path: Path) -> None:
    import pickle

    from nb2container import secret_scan
    from nb2container.errors import CaptureError

    (tmp_path / "state.pkl").write_bytes(pickle.dumps({"api_key": "Zq8vK2mW9pXr", "rows": 3}))
    (finding,) = secret_scan._in_pickle(tmp_path / "state.pkl", "the artifact `state`", "state")
    assert finding.where == "the artifact `state` (its `api_key`)"
    folder = tmp_path / "build"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests/golden_calls.json").write_text('{"expected": "Bearer Zq8vK2mW9pXr"}')
    with pytest.raises(CaptureError, match=r"tests/golden_calls.json in the build folder would hold the value of "
                                           r"--secret KEY"):
        secret_scan.check_folder(folder, {"--secret KEY": "Zq8vK2mW9pXr"}, "predict")
    secret_scan.check_folder(folder, {"--secret KEY": "something-else"}, "predict")


def test_a_secret_like_argument_is_never_published(tmp_path: Path) -> None:
    """Issue 25: `f("hello", "ghp_...")` put the token in the OpenAPI example, README and golden tests."""
    path = notebook(tmp_path, "def predict(query: str, api_key: str) -> str:\n"
                              "    return query.upper() + str(len(api_key))",
                    f"predict('hello', {TOKEN!r})", "predict('bye', 'not-a-token')")
    code, said = render(path)
    assert code == 0, said
    assert "`api_key` looks secret: its recorded values are redacted" in said
    folder = tmp_path / "out"
    assert not [p for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert "[redacted]" in (folder / "app/openapi.json").read_text()
    golden = json.loads((folder / "tests/golden_calls.json").read_text())["calls"]
    assert golden == [] and "not-a-token" not in (folder / "README.md").read_text()  # the parameter, whole


def test_the_smoke_test_still_sends_a_redacted_argument_and_nothing_written_holds_it(
        tmp_path: Path, docker_client: docker.DockerClient) -> None:
    from tests.conftest import run_cli

    path = notebook(tmp_path, "def predict(query: str, api_key: str) -> str:\n"
                              "    return query.upper() + str(len(api_key))",
                    f"predict('hello', {TOKEN!r})")
    tag = "nb2c-test/redacted:latest"
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    built = run_cli("build", path, "--function", "predict", "--tag", tag, "--output", tmp_path / "build",
                    "--report", report, "--junit", junit)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "1 passed, 0 failed" in built.stdout  # the container got the real token: len 40
    assert TOKEN not in built.stdout + built.stderr + report.read_text() + junit.read_text()
    assert json.loads(report.read_text())["redacted_parameters"] == ["api_key"]
    assert not [p for p in (tmp_path / "build").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    from tests.test_promises import found_in_docker
    assert found_in_docker(docker_client, tag, TOKEN.encode()) == []  # layers, history, configuration
    docker_client.images.remove(tag)


def test_a_returned_secret_is_in_no_file_and_the_source_advice_works_when_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADS_TOKEN", TOKEN)
    returned = notebook(tmp_path, "import os\nAPI_TOKEN = os.environ['ROADS_TOKEN']",
                        "def predict(x: int) -> dict:\n    return {'x': x, 'token': API_TOKEN}", "predict(1)")
    code, said = render(returned, "--secret", "API_TOKEN")
    assert code == 0, said
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    literal = notebook(tmp_path, f"def predict(x: int) -> int:\n    return x + len({TOKEN!r})", "predict(1)")
    code, said = render(literal)
    assert code == 1 and "Move the value out of the code into a global" in said
    followed = notebook(tmp_path, f"API_TOKEN = {TOKEN!r}",
                        "def predict(x: int) -> int:\n    return x + len(API_TOKEN)", "predict(1)")
    assert render(followed, "--secret", "API_TOKEN")[0] == 0  # the advice, followed
