"""The tool's promises: a user's files survive, secrets never ship, a stale notebook is not
called reproduced, one verdict everywhere, and a hardened image with an SBOM.

Ordered by cost: pure logic first, then the real CLI without an engine, then real kernels,
then the real engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import docker
import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook, new_output

from nb2container import output, sbom, secret_scan
from nb2container.errors import CaptureError, UsageError
from nb2container.model import (
    Capture,
    FrozenEnvironment,
    KernelInterpreter,
    Pin,
    ServingSpec,
    SmokeCase,
    SmokeReport,
    SystemPackage,
)
from nb2container.report import BuildReport
from tests.conftest import NOTEBOOKS, Built, cli, run_cli

CANARY = "sk-live-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b"


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def filler(files: dict[str, str]):  # type: ignore[no-untyped-def]
    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return fill


# --- the build folder: only what nb2container wrote is replaced ---------------------------------

def test_a_rebuild_replaces_only_what_the_last_build_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    output.replace(folder, None, filler({"Dockerfile": "v1", "app/old.py": "v1", "wheels/a.whl": "a"}))
    (folder / "my_notes.txt").write_text("keep me")
    (folder / "app/extra.py").write_text("print('mine')")
    (folder / "results").mkdir()
    (folder / "results/run.csv").write_text("1,2\n")
    mine = {k: v for k, v in digests(folder).items() if k in ("my_notes.txt", "app/extra.py", "results/run.csv")}

    written = output.replace(folder, None, filler({"Dockerfile": "v2", "wheels/b.whl": "b"}))

    assert {k: v for k, v in digests(folder).items() if k in mine} == mine  # checksums unchanged
    assert (folder / "Dockerfile").read_text() == "v2"
    assert not (folder / "app/old.py").exists() and not (folder / "wheels/a.whl").exists()
    assert written.kept == ("app/extra.py", "my_notes.txt", "results/run.csv")
    assert output.recorded(folder) == ("Dockerfile", "wheels/b.whl")
    assert not [p for p in tmp_path.iterdir() if p.name != "build"]  # no staging folder left behind


def test_a_user_file_in_the_way_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    output.replace(folder, None, filler({"Dockerfile": "v1"}))
    (folder / "README.md").write_text("my own readme")
    before = digests(folder)
    with pytest.raises(UsageError, match=r"README\.md, which nb2container did not write"):
        output.replace(folder, None, filler({"Dockerfile": "v2", "README.md": "generated"}))
    assert digests(folder) == before


def test_a_failed_render_leaves_the_last_build_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    output.replace(folder, None, filler({"Dockerfile": "v1"}))

    def broken(staging: Path) -> None:
        (staging / "Dockerfile").write_text("half")
        raise CaptureError("the template failed")

    with pytest.raises(CaptureError):
        output.replace(folder, None, broken)
    assert (folder / "Dockerfile").read_text() == "v1"


def test_a_folder_of_an_older_version_keeps_what_it_does_not_overwrite(tmp_path: Path) -> None:
    (tmp_path / output.MARKER).write_text("rendered by nb2container 0.0.9\n")  # no file list
    (tmp_path / "Dockerfile").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    written = output.replace(tmp_path, None, filler({"Dockerfile": "new"}))
    assert (tmp_path / "Dockerfile").read_text() == "new" and (tmp_path / "notes.txt").read_text() == "mine"
    assert written.kept == ("notes.txt",)


def test_folders_that_must_never_be_a_build_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="it is the current directory"):
        output.check(Path("."), None)
    notebook = tmp_path / "work" / "nb.ipynb"
    notebook.parent.mkdir()
    with pytest.raises(UsageError, match=r"it is the folder of the notebook nb\.ipynb"):
        output.check(tmp_path / "work", notebook)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(UsageError, match="it is a home directory"):
        output.check(tmp_path / "home", None)
    with pytest.raises(UsageError, match="the root of the file system"):
        output.check(Path("/"), None)
    output.check(tmp_path / "work" / "build", notebook)  # a folder of its own is fine


# --- the CLI refuses before the notebook runs ----------------------------------------------------

@pytest.mark.parametrize("where", ["current directory", "notebook's folder"])
def test_output_refused_before_the_notebook_runs(tmp_path: Path, where: str) -> None:
    shutil.copy(NOTEBOOKS / "house_prices.ipynb", tmp_path / "house_prices.ipynb")
    (tmp_path / "my_results.csv").write_text("keep\n")
    before = digests(tmp_path)
    target = "." if where == "current directory" else str(tmp_path)
    started = time.monotonic()
    result = cli("render", tmp_path / "house_prices.ipynb", "--function", "predict_price",
                 "--output", target, cwd=tmp_path)
    assert result.returncode == 1
    assert time.monotonic() - started < 20  # no kernel was started
    assert "Running" not in result.stderr and "Traceback" not in result.stderr
    assert "cannot be the build folder" in result.stderr and "--output" in result.stderr
    assert digests(tmp_path) == before


def test_no_engine_fails_in_seconds_with_a_message_for_a_data_scientist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    # in this process: its seconds are the tool's, not an interpreter's start-up
    result = cli("build", NOTEBOOKS / "house_prices.ipynb", "--engine", "docker", "--output", tmp_path / "build")
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    message = result.stderr
    assert "No Docker engine answers at DOCKER_HOST=unix://" in message
    assert "Start Docker" in message and "nb2container render" in message
    for leak in ("scripts/", "Traceback", "Error while fetching", "DockerException", "Running house_prices"):
        assert leak not in message, leak
    assert not (tmp_path / "build").exists()


# --- secrets -------------------------------------------------------------------------------------

def a_capture(tmp_path: Path, constants: dict[str, str], definitions: tuple[str, ...] = ()) -> Capture:
    spec = ServingSpec("predict", "(x)", (), False, (), tuple((k, repr(v)) for k, v in constants.items()),
                       definitions or ("def predict(x):\n    return x",), ())
    interpreter = KernelInterpreter("3.11.7", "cpython", "python", "x86_64", {})
    return Capture(None, "0" * 64, spec, interpreter, (), (), 0, tmp_path / "artifacts")


def test_secrets_are_found_by_name_format_and_entropy(tmp_path: Path) -> None:
    capture = a_capture(tmp_path, {
        "API_TOKEN": CANARY, "dbPassword": "correct-horse", "SLACK": "xoxb-1234567890-0987654321-abcdefghijklmn",
        "AWS_ID": "AKIAIOSFODNN7EXAMPLE", "BLOB": "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Qgb2YgZW50cm9weQ==",
        # settings, not secrets
        "MODEL_NAME": "house prices v2", "FEATURES": ["area_sqft", "num_bedrooms"], "TOKEN_LIMIT": 512,
        "auth_mode": "none", "THRESHOLD": 0.5,
    }, definitions=('def predict(x):\n    password = "Sup3rS3cr3tPassw0rd!"\n    return x',))
    found = secret_scan.scan(capture, {"API_TOKEN": 3})
    names = {f.name for f in found}
    assert {"API_TOKEN", "dbPassword", "SLACK", "AWS_ID", "BLOB"} <= names
    assert not names & {"MODEL_NAME", "FEATURES", "TOKEN_LIMIT", "auth_mode", "THRESHOLD"}
    assert any(f.where == "the global `API_TOKEN` (cell 3)" for f in found)
    assert any(f.name is None and "def predict(x)" in f.where for f in found)


def test_a_secret_is_refused_by_name_and_declared_ones_leave_the_module(tmp_path: Path) -> None:
    capture = a_capture(tmp_path, {"API_TOKEN": CANARY, "SCALE": 2})
    with pytest.raises(CaptureError) as refused:
        secret_scan.apply(capture, (), (), {"API_TOKEN": 1})
    message = str(refused.value)
    assert "the global `API_TOKEN` (cell 1)" in message and "--secret API_TOKEN" in message
    assert CANARY not in message
    declared = secret_scan.apply(capture, ("API_TOKEN",), (), {})
    assert dict(declared.spec.constants) == {"SCALE": "2"} and declared.spec.secrets == ("API_TOKEN",)
    assert declared.secret_values == {"API_TOKEN": CANARY} and CANARY not in repr(declared)
    assert secret_scan.apply(capture, (), ("API_TOKEN",), {}).spec.constants == capture.spec.constants
    with pytest.raises(UsageError, match="reads no global string of that name"):
        secret_scan.apply(capture, ("SCALE",), (), {})


# --- one verdict ---------------------------------------------------------------------------------

def a_report(**fields: object) -> BuildReport:
    report = BuildReport("nb.ipynb", "predict", None, None, None, "3.11.7", {}, None, None)
    for name, value in fields.items():
        setattr(report, name, value)
    return report


def test_the_report_decides_pass_or_fail_once() -> None:
    passing = SmokeReport([SmokeCase(1, "predict(1)", [1], 1, "notebook", passed=True)], health=True)
    stale = SmokeCase(2, "predict(2)", [2], 4, "fresh run", passed=True, stale=True, stored=5)
    assert a_report(smoke=passing).verdict.ok
    assert a_report().verdict.ok  # rendered only
    assert not a_report(smoke=passing, stale=[stale]).verdict.ok
    assert a_report(smoke=passing, stale=[stale], allow_stale=True).verdict.ok
    assert not a_report(smoke=SmokeReport(health=False)).verdict.ok
    assert not a_report(smoke=passing, drift=["numpy is 1 in the image, 2 in the lock"]).verdict.ok
    (reason,) = a_report(stale=[stale]).verdict.reasons
    assert "STALE" in reason and "--allow-stale" in reason


def test_the_magics_result_reads_the_verdict() -> None:
    from nb2container.display import Containerized
    from nb2container.verify import VerifiedCell, VerifyReport

    passing = SmokeReport([SmokeCase(1, "f(1)", [1], 1, "notebook", passed=True)], health=True)
    failed_verify = VerifyReport("nb.ipynb", [VerifiedCell(2, "failed", "output differs")], exit_code=1)
    result = Containerized(a_report(smoke=passing, verify=failed_verify, image_id="sha256:" + "0" * 64), [])
    assert result.ok is False
    assert "does NOT reproduce" in repr(result) and "--verify-notebook" in repr(result)


# --- SBOM ----------------------------------------------------------------------------------------

def test_the_sbom_lists_every_package_with_its_hash_and_is_valid_cyclonedx(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    pins = (Pin("numpy", "2.4.6", "numpy-2.4.6-cp311-manylinux.whl", "a" * 64),
            Pin("scikit_learn", "1.9.1", "scikit_learn-1.9.1-cp311.whl", "b" * 64))
    frozen = FrozenEnvironment("3.11.7", pins, ("numpy",), system_packages=(
        SystemPackage("libgomp1", "12.2.0-14", "libgomp1_12.2.0-14_amd64.deb", "c" * 64),))
    server = [Pin("gunicorn", "27.0.1", "gunicorn-27.0.1-py3-none-any.whl", "d" * 64)]
    text = sbom.text(a_capture(tmp_path, {}), frozen, server, "python:3.11.7-slim-bookworm", "linux/amd64")
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    document = json.loads(text)
    hashes = {c["name"]: c["hashes"][0]["content"] for c in document["components"] if "hashes" in c}
    assert hashes == {"numpy": "a" * 64, "scikit_learn": "b" * 64, "libgomp1": "c" * 64, "gunicorn": "d" * 64}
    assert document["components"][0]["name"] == "python" and document["components"][0]["type"] == "container"
    assert text == sbom.text(a_capture(tmp_path, {}), frozen, server, "python:3.11.7-slim-bookworm", "linux/amd64")


# --- real kernels --------------------------------------------------------------------------------

def secret_notebook(folder: Path) -> Path:
    nb = new_notebook(cells=[
        new_code_cell(f'API_TOKEN = "{CANARY}"'),
        new_code_cell("def predict(x):\n    return {'x': x, 'authorized': API_TOKEN.startswith('sk-live-')}"),
        new_code_cell("predict(3)", execution_count=3, outputs=[
            new_output("execute_result", {"text/plain": "{'x': 3, 'authorized': True}"}, execution_count=3)]),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "secret_token.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.kernel
def test_a_notebook_secret_is_refused_naming_it_and_its_cell(tmp_path: Path) -> None:
    result = cli("render", secret_notebook(tmp_path), "--output", tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the global `API_TOKEN` (cell 1)" in result.stderr and "--secret API_TOKEN" in result.stderr
    assert CANARY not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.kernel
def test_files_a_user_adds_to_a_build_folder_survive_a_rebuild(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    first = cli("render", NOTEBOOKS / "zero_arguments.ipynb", "--output", folder)
    assert first.returncode == 0, first.stderr
    (folder / "my_notes.txt").write_text("keep me\n")
    (folder / "app" / "extra.py").write_text("print('mine')\n")
    (folder / "Dockerfile").write_text("# my edit, which the rebuild replaces\n")
    mine = {k: v for k, v in digests(folder).items() if k in ("my_notes.txt", "app/extra.py")}
    second = cli("render", NOTEBOOKS / "zero_arguments.ipynb", "--output", folder)
    assert second.returncode == 0, second.stderr
    assert {k: v for k, v in digests(folder).items() if k in mine} == mine
    assert "kept 2 file(s)" in second.stderr and "my_notes.txt" in second.stderr
    assert (folder / "Dockerfile").read_text().startswith("# Generated by nb2container")


def found_in_docker(client: docker.DockerClient, reference: str, needle: bytes) -> list[str]:
    """Where ``needle`` appears in the image: a layer's file, its history, its configuration."""
    places = []
    with tarfile.open(fileobj=io.BytesIO(b"".join(client.images.get(reference).save()))) as saved:
        for member in saved.getmembers():
            data = saved.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            blob = data.read()
            if member.name.endswith(".tar") or member.name.startswith("blobs/"):
                try:
                    with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                        for entry in layer.getmembers():
                            content = layer.extractfile(entry) if entry.isfile() else None
                            if content is not None and needle in content.read():
                                places.append(f"{member.name}:{entry.name}")
                    continue
                except tarfile.TarError:
                    pass
            if needle in blob:
                places.append(member.name)
    if needle.decode() in json.dumps(client.api.history(reference)):
        places.append("history")
    if needle.decode() in json.dumps(client.images.get(reference).attrs):
        places.append("inspect")
    return places


@pytest.mark.engine
def test_a_declared_secret_reaches_only_the_containers_environment(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    tag = "nb2c-test/secret-token:latest"
    folder, report, junit = tmp_path / "build", tmp_path / "report.json", tmp_path / "junit.xml"
    result = run_cli("build", secret_notebook(tmp_path), "--secret", "API_TOKEN", "--tag", tag,
                     "--output", folder, "--report", report, "--junit", junit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout  # the smoke container got the kernel's value
    assert CANARY not in result.stdout + result.stderr
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in report.read_text() and CANARY not in junit.read_text()
    assert found_in_docker(docker_client, tag, CANARY.encode()) == []
    module = (folder / "app/notebook_function.py").read_text()
    assert 'API_TOKEN = _nb2c_secret("API_TOKEN")' in module
    deployment = yaml.safe_load((folder / "deploy/k8s/deployment.yaml").read_text())
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "predict-secrets", "key": "API_TOKEN"}
    compose = yaml.safe_load((folder / "deploy/compose.yaml").read_text())
    assert compose["services"]["predict"]["environment"]["API_TOKEN"].startswith("${API_TOKEN:?")
    assert "-e API_TOKEN" in (folder / "README.md").read_text()
    # Without the secret the server refuses to start, and says which variable it needs.
    logs = docker_client.containers.run(tag, ["python", "-c", "import sys; sys.path.insert(0, '/app'); "
                                              "import notebook_function"], remove=False, detach=True)
    logs.wait(timeout=60)
    assert "the secret API_TOKEN is not set" in logs.logs().decode()
    logs.remove()


# --- the hardened image --------------------------------------------------------------------------

@pytest.mark.engine
def test_the_runtime_image_has_no_setuid_files_and_no_pip(
    house_build: Built, docker_client: docker.DockerClient
) -> None:
    def run(*command: str) -> str:
        return bytes(docker_client.containers.run(house_build.tag, list(command), remove=True,
                                                  user="0")).decode()

    assert run("find", "/", "-xdev", "-perm", "/6000", "-type", "f").strip() == ""
    probe = ("import importlib.util as u; "
             "print([m for m in ('pip', 'setuptools', 'wheel', 'ensurepip') if u.find_spec(m)])")
    assert run("/opt/venv/bin/python", "-c", probe).strip() == "[]"
    assert run("python", "-c", probe).strip() == "[]"  # the base's interpreter too
    labels = docker_client.images.get(house_build.tag).labels
    assert labels["io.nb2container.sbom"] == sbom.IMAGE_PATH
    assert labels["org.opencontainers.image.base.name"].startswith("python:")
    shipped = json.loads(run("cat", sbom.IMAGE_PATH))
    assert shipped == json.loads((house_build.folder / sbom.FILE).read_text())
    locked = {c["name"]: c["hashes"][0]["content"] for c in shipped["components"]
              if "/opt/venv" in json.dumps(c.get("properties", []))}
    lock = (house_build.folder / "requirements.lock").read_text()
    assert len(locked) == len(house_build.report["packages"])
    assert all(f"--hash=sha256:{digest}" in lock for digest in locked.values())


def test_compose_drops_capabilities_and_privileges(tmp_path: Path) -> None:
    from nb2container.runtime.layout import IMAGE
    from nb2container.templating import environment

    text = environment().get_template("deploy/compose.yaml.j2").render(
        name="predict", image="x:1", port=8000, function="predict", notebook_name="nb.ipynb",
        notebook_sha256="0", sizing=__import__("nb2container.deploy", fromlist=["Sizing"]).Sizing.from_usage(None),
        gpu=False, layout=IMAGE, prestop=5, termination_grace=40, secrets=[], failed="", labels=[], base_image="")
    service = yaml.safe_load(text)["services"]["predict"]
    assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
    assert service["security_opt"] == ["no-new-privileges:true"] and service["user"] == IMAGE.user


@pytest.mark.engine
def test_the_magic_with_a_failing_verify_notebook_is_not_ok(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    with contextlib.suppress(docker.errors.ImageNotFound):  # a tag an earlier run left must not pass for this one's
        docker_client.images.remove("nb2c-test/double:latest")
    nb = new_notebook(cells=[
        new_code_cell("%load_ext nb2container"),
        new_code_cell("def double(x):\n    return 2 * x"),
        new_code_cell("double(21)"),
        new_code_cell("import os\nassert os.getuid() != 10001, 'the image user'  # fails only in the image's re-run"),
        new_code_cell(f"result = %containerize double --tag nb2c-test/double:latest --output {tmp_path / 'build'} "
                      "--verify-notebook --wait\nprint(result.ok)\nresult"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "double.ipynb"
    nbformat.write(nb, path)
    client = NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "JPY_SESSION_NAME": str(path)})
    cell = nb.cells[-1]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    assert printed.strip().splitlines()[-1] == "False"
    summary = next(o for o in cell.outputs if o.output_type == "execute_result").data["text/plain"]
    assert "does NOT reproduce the notebook" in summary and "--verify-notebook" in summary
    assert "first cell 4: " in summary  # the uid cell; the magic's own cells are skipped in the re-run
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get("nb2c-test/double:latest")


@pytest.mark.kernel
def test_the_magic_calls_a_result_changed_since_the_call_stale(tmp_path: Path) -> None:
    """What the user saw when the call ran is the saved output; a global changed since (a model
    retrained) makes the call stale in the live kernel too, and the build is refused."""
    from nbclient import NotebookClient

    nb = new_notebook(cells=[
        new_code_cell("%load_ext nb2container"),
        new_code_cell("WEIGHT = 2\ndef score(x):\n    return x * WEIGHT"),
        new_code_cell("score(3)"),
        new_code_cell("WEIGHT = 5  # retrained after the call"),
        new_code_cell(f"result = %containerize score --no-build --wait --output {tmp_path / 'build'}\n"
                      "print(result.ok, len(result.report.stale), result.report.stale[0].stored, "
                      "result.report.stale[0].expected)"),
    ])
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert printed.strip().splitlines()[-1] == "False 1 6 15"
