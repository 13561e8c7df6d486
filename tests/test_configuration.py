"""The platform team's image: one configuration from three sources, a custom base that is
inspected and refused when it cannot work, extra system packages installed offline, environment
and labels, and template overrides by blocks.

Ordered by cost: pure logic and the CLI in-process first, then a real kernel (the magic), then
the real engine."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import docker
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nb2container import base, config, render
from nb2container.errors import UsageError
from nb2container.model import Pin
from nb2container.options import Options
from nb2container.templating import environment
from tests.conftest import NOTEBOOKS, cli, run_cli


def project(folder: Path, pyproject: str, notebook: str = "house_prices.ipynb") -> Path:
    """A notebook in a folder of its own, with a pyproject.toml beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOKS / notebook, folder / notebook)
    (folder / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    return folder / notebook


def settings_of(output: str) -> dict[str, tuple[str, str]]:
    """`nb2container config`'s table: setting -> (value, where from)."""
    rows = {}
    for line in output.splitlines()[3:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) > 1:
            rows[parts[0]] = ("" if len(parts) == 2 else parts[1], parts[-1])
    return rows


# --- one configuration, three sources ------------------------------------------------------------

def test_a_setting_resolves_file_then_environment_then_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tpl").mkdir()
    notebook = project(tmp_path, """
        [project]
        name = "pricing"

        [tool.nb2container]
        port = 9000
        tag = "pricing/model:file"
        platform = "linux/arm64"
        templates = "tpl"
        system_packages = ["jq"]

        [tool.nb2container.labels]
        "com.example.team" = "pricing"
        """)
    monkeypatch.setenv("NB2CONTAINER_PORT", "9100")
    monkeypatch.setenv("NB2CONTAINER_TAG", "pricing/model:env")
    result = cli("config", notebook, "--port", "9200")
    assert result.returncode == 0, result.stderr
    assert f"configuration file: {tmp_path / 'pyproject.toml'}" in result.stdout
    rows = settings_of(result.stdout)
    assert rows["port"] == ("9200", "--port")  # the flag wins over the environment and the file
    assert rows["tag"] == ('"pricing/model:env"', "NB2CONTAINER_TAG")  # the environment over the file
    assert rows["platform"] == ('"linux/arm64"', "pyproject.toml [tool.nb2container]")
    assert rows["labels"] == ('{"com.example.team": "pricing"}', "pyproject.toml [tool.nb2container]")
    assert rows["timeout"] == ("600", "default")
    resolved = config.resolve({"port": 9200}, tmp_path, {"NB2CONTAINER_PORT": "9100"}, notebook=notebook)
    assert resolved.options.port == 9200 and resolved.options.tag == "pricing/model:file"
    assert resolved.options.templates == tmp_path / "tpl"  # relative to the file, not to the current folder
    assert resolved.options.system_packages == ("jq",)


def test_every_flag_is_a_key_and_every_key_a_flag() -> None:
    from nb2container.options import FLAGS

    assert {flag.key for flag in FLAGS if flag.configurable} == set(config.KEYS)
    assert {flag.names[-1] for flag in FLAGS if not flag.configurable} == {"--json", "--verbose"}


def test_an_unknown_key_is_named_with_the_nearest_known_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = project(tmp_path, """
        [tool.nb2container]
        base_imgae = "company/python:3.11.7"
        """)
    result = cli("build", notebook)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "`base_imgae`" in result.stderr and "Did you mean `base_image`?" in result.stderr
    assert "Running" not in result.stderr  # refused before the notebook runs
    (tmp_path / "pyproject.toml").unlink()
    monkeypatch.setenv("NB2CONTAINER_SYSTEM_PACKGES", "jq")
    result = cli("build", notebook)
    assert "NB2CONTAINER_SYSTEM_PACKGES" in result.stderr and "`system_packages`" in result.stderr


@pytest.mark.parametrize(("setting", "says"), [
    ('port = "8080"', "`port` in"),
    ("system_packages = 'jq'", "must be a list of strings"),
    ('platform = "linux/s390x"', "must be one of linux/amd64, linux/arm64"),
    ('[tool.nb2container.env]\nNB2C_WORKERS = "4"', "`NB2C_WORKERS`"),
    ('[tool.nb2container.labels]\n"io.nb2container.function" = "x"', "nb2container sets itself"),
    ('[tool.nb2container.labels]\n"org.opencontainers.image.base.name" = "x"', "nb2container sets itself"),
    ('system_packages = ["JQ!"]', "not a Debian package name"),
    ('templates = "nowhere"', "which is not a folder"),
    ("port = 8081", "port 8081 to themselves"),  # the probe port (IMAGE.probe_port)
    ("port = 70000", "between 1 and 65535"),
    ('tag = "House Prices!"', "not an image reference an engine takes"),
    ('tag = "Team/house:1"', "not an image reference an engine takes"),
])
def test_a_setting_the_image_cannot_take_is_refused_in_one_paragraph(tmp_path: Path, setting: str, says: str) -> None:
    notebook = project(tmp_path, "[tool.nb2container]\n" + setting + "\n")
    result = cli("build", notebook)
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Running" not in result.stderr


@pytest.mark.parametrize("reference", ["house-prices", "team/house-prices:1.0", "localhost:5000/team/x:v1",
                                       "registry.example.com:443/a/b_c/d-e:1.2.3", "x/y@sha256:" + "a" * 64])
def test_image_references_engines_take_pass_the_check(reference: str) -> None:
    config.check(Options(notebook=None, tag=reference, push=reference))


def test_nb2container_toml_beside_the_notebook_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "nb2container.toml").write_text('port = 9300\n[env]\nCOMPANY_REGION = "eu-west-1"\n')
    resolved = config.resolve({}, tmp_path, {})
    assert resolved.options.port == 9300 and resolved.options.env == {"COMPANY_REGION": "eu-west-1"}
    assert resolved.settings["env"].source == "nb2container.toml"


# --- the base is inspected, and refused when it cannot work --------------------------------------

WHEELS = (Pin("numpy", "2.4.6", "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", ""),
          Pin("joblib", "1.6.0", "joblib-1.6.0-py3-none-any.whl", ""))
GOOD = base.BaseFacts("company/python:1", "sha256:1", None, "3.11.7", base.Version("24.0"), ("glibc", "2.36"),
                      "debian", (), "bookworm", frozenset({"groupadd", "useradd", "find", "sha256sum", "dpkg"}))


@pytest.mark.parametrize(("change", "says"), [
    ({"python": "3.11.2"}, "has Python 3.11.2, and the notebook's kernel ran Python 3.11.7"),
    ({"python": None}, "has no `python` on its PATH"),
    ({"pip": None}, "has no pip"),
    ({"pip": base.Version("21.0")}, "has pip 21.0"),
    ({"libc": ("musl", "1.2.4")}, "has the C library musl 1.2.4"),
    ({"libc": ("glibc", "2.17")}, "has glibc 2.17; the locked wheels need glibc 2.28"),
    ({"tools": frozenset({"find"})}, "lacks groupadd, useradd, sha256sum"),
])
def test_a_base_that_cannot_work_is_refused_naming_what_differs(change: dict[str, object], says: str) -> None:
    from dataclasses import replace

    base.check(GOOD, "3.11.7", WHEELS)  # the one that works
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        base.check(replace(GOOD, **change), "3.11.7", WHEELS)  # type: ignore[arg-type]


def test_debian_packages_need_the_release_they_were_downloaded_for() -> None:
    from dataclasses import replace

    base.check_debian(GOOD, True)
    base.check_debian(replace(GOOD, os_id="alpine", codename=""), False)  # no package, no need
    with pytest.raises(UsageError, match="the base image company/python:1 is ubuntu jammy"):
        base.check_debian(replace(GOOD, os_id="ubuntu", os_like=("debian",), codename="jammy"), True)
    assert str(base.glibc_needed(WHEELS)) == "2.28" and base.glibc_needed(WHEELS[1:]) is None


# --- templates -----------------------------------------------------------------------------------

def test_a_template_with_an_undefined_variable_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "README.md.j2").write_text("# {{ function }}\nOwner: {{ team_owner }}\n")
    with pytest.raises(UsageError) as refused:
        render._rendered(environment(tmp_path), "README.md.j2", {"function": "predict"}, tmp_path)
    assert "'team_owner' is undefined" in str(refused.value) and str(tmp_path) in str(refused.value)
    (tmp_path / "README.md.j2").write_text("{% if %}\n")
    with pytest.raises(UsageError, match="is not valid Jinja2"):
        render._rendered(environment(tmp_path), "README.md.j2", {}, tmp_path)


INSTRUCTIONS = ("FROM", "RUN", "COPY", "ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL",
                "CMD", "ARG")


def well_formed(dockerfile: str) -> list[str]:
    """Lines that are neither an instruction, a comment, nor the continuation of a line ending in \\."""
    wrong, continued = [], False
    for line in dockerfile.splitlines():
        stripped = line.strip()
        stray = bool(stripped) and not stripped.startswith("#") and not continued \
            and stripped.split()[0] not in INSTRUCTIONS
        if stray or re.search(r"\\\s+\S", stripped):  # or a continuation that is not at the end of its line
            wrong.append(line)
        continued = stripped.endswith("\\") or (continued and not stripped)
    return wrong


@pytest.mark.kernel
def test_env_labels_and_blocks_render_into_a_well_formed_dockerfile(stdlib_capture: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    capture, frozen, server_pins = stdlib_capture
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "Dockerfile.j2").write_text('{% extends "nb2container/Dockerfile.j2" %}\n'
                                             "{% block final %}\nLABEL com.example.final=\"{{ function }}\"\n"
                                             "{% endblock %}\n")
    options = Options(notebook=None, env={"A": "1 $HOME", "B": 'say "hi"'}, labels={"com.example.team": "x"},
                      templates=templates)
    folder = tmp_path / "build"
    folder.mkdir()
    render.render(capture, replace(frozen, base_image="company/python:1", base_digest="sha256:abc"), server_pins,
                  folder, "t:1", options, [])
    dockerfile = (folder / "Dockerfile").read_text()
    assert well_formed(dockerfile) == []
    assert 'ENV A="1 \\$HOME"' in dockerfile and 'ENV B="say \\"hi\\""' in dockerfile
    assert 'com.example.team="x"' in dockerfile and "FROM company/python:1" in dockerfile
    assert 'org.opencontainers.image.base.digest="sha256:abc"' in dockerfile
    assert dockerfile.rstrip().endswith('LABEL com.example.final="' + capture.spec.function + '"')
    assert f"Templates customized from `{templates}`: Dockerfile.j2" in (folder / "README.md").read_text()


# --- the magic reads the same configuration (a real kernel) --------------------------------------

@pytest.mark.kernel
def test_the_magic_reads_the_notebooks_configuration(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    (tmp_path / "nb2container.toml").write_text('bse_image = "company/python:1"\n')
    nb = new_notebook(cells=[new_code_cell("%load_ext nb2container"),
                             new_code_cell("def predict(x):\n    return x + 1"),
                             new_code_cell("%containerize predict --no-build")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = json.dumps(nb.cells[2].outputs)  # IPython shows a magic's UsageError as its message, on stderr
    assert "`bse_image`" in shown and "Did you mean `base_image`?" in shown, shown


# --- the platform team's image, built (the real engine) ------------------------------------------

SEEDED = "python:3.11.7-slim-bookworm"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nnb2c-test company CA\n-----END CERTIFICATE-----\n"


def build_base(client: docker.DockerClient, folder: Path, tag: str, dockerfile: str,
               files: dict[str, Path | str] | None = None) -> str:
    folder.mkdir(parents=True)
    for name, content in (files or {}).items():
        if isinstance(content, Path):
            (shutil.copytree if content.is_dir() else shutil.copy)(content, folder / name)
        else:
            (folder / name).write_text(content)
    (folder / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    client.images.build(path=str(folder), tag=tag, rm=True, network_mode="none")
    return tag


def test_the_platform_teams_base_packages_environment_labels_and_templates(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    company = build_base(docker_client, tmp_path / "base", "nb2c-test/company-base:1", f"""
        FROM {SEEDED}
        COPY company-ca.crt /usr/local/share/ca-certificates/company-ca.crt
        LABEL com.example.hardened="yes"
        """, {"company-ca.crt": CERTIFICATE})
    notebook = project(tmp_path / "pricing", f"""
        [tool.nb2container]
        base_image = "{company}"
        system_packages = ["jq"]
        templates = "templates"

        [tool.nb2container.env]
        COMPANY_REGION = "eu-west-1"

        [tool.nb2container.labels]
        "com.example.team" = "pricing"
        """)
    (tmp_path / "pricing" / "templates").mkdir()
    (tmp_path / "pricing" / "templates" / "Dockerfile.j2").write_text(
        '{% extends "nb2container/Dockerfile.j2" %}\n'
        "{% block runtime_setup %}\nRUN echo 'customized for {{ function }}' > /etc/company-customized\n"
        "{% endblock %}\n")
    folder, tag = tmp_path / "build", "nb2c-test/company-house:1"
    result = run_cli("build", notebook, "--tag", tag, "--output", folder, "--report", tmp_path / "report.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Inspecting the base image {company}" in result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["smoke"]["failed"] == 0

    image = docker_client.images.get(tag)
    labels, environment_ = image.labels, image.attrs["Config"]["Env"]
    assert labels["com.example.team"] == "pricing" and labels["com.example.hardened"] == "yes"
    assert labels["org.opencontainers.image.base.name"] == company
    assert labels["org.opencontainers.image.base.digest"] == docker_client.images.get(company).id
    assert "COMPANY_REGION=eu-west-1" in environment_

    def run(*command: str) -> str:
        return bytes(docker_client.containers.run(tag, list(command), remove=True, network_mode="none")).decode()

    assert run("cat", "/usr/local/share/ca-certificates/company-ca.crt") == CERTIFICATE
    assert run("jq", "-n", "1 + 1").strip() == "2"
    assert run("cat", "/etc/company-customized").strip() == "customized for predict_price"
    readme = (folder / "README.md").read_text()
    assert f"Base image: `{company}`" in readme and "Templates customized from" in readme and "jq" in readme
    assert "com.example.team" in (folder / "deploy" / "compose.yaml").read_text()
    # The folder builds again with no network: jq came from debs/, checked and installed offline.
    docker_client.images.build(path=str(folder), network_mode="none", nocache=True, rm=True)


@pytest.mark.parametrize("kind", ["another Python", "no Python"])
def test_a_base_that_cannot_work_is_refused_before_the_build(
    kind: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    if kind == "another Python":  # Debian's own Python 3.11.2, from this machine, in front of the base's
        if not Path("/usr/bin/python3.11").is_file():
            pytest.skip("needs Debian's python3.11 on this machine")
        reference = build_base(docker_client, tmp_path / "base", "nb2c-test/base-other-python:1", f"""
            FROM {SEEDED}
            COPY python3.11 /usr/bin/python3.11
            COPY lib /usr/lib/python3.11
            RUN ln -sf /usr/bin/python3.11 /usr/local/bin/python
            """, {"python3.11": Path("/usr/bin/python3.11"), "lib": Path("/usr/lib/python3.11")})
        says = ["has Python 3.11.2", "Python 3.11.7"]
    else:
        reference = build_base(docker_client, tmp_path / "base", "nb2c-test/base-no-python:1", f"""
            FROM {SEEDED}
            RUN rm -f /usr/local/bin/python*
            """)
        says = ["has no `python` on its PATH", "Python 3.11.7"]
    notebook = project(tmp_path / "pricing", "")
    result = run_cli("build", notebook, "--base-image", reference, "--output", tmp_path / "build",
                     "--tag", "nb2c-test/never-built:1")
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.split("nb2container: ", 1)[-1]
    assert all(fragment in message for fragment in says), message
    assert reference in message and "Traceback" not in result.stderr
    assert "Building the image" not in result.stderr and not (tmp_path / "build").exists()
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get("nb2c-test/never-built:1")


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Configuration"):readme.index("## Command line")]
    missing = [key for key in config.KEYS if f"`{key}`" not in section and f"{key} =" not in section]
    assert missing == []
