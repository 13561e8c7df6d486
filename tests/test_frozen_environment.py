"""The frozen environment: `nb2container freeze`, byte-stable rendering, the drift check,
and hermetic builds (real kernels, real engine)."""

from __future__ import annotations

import filecmp
import json
import platform
import shutil
from pathlib import Path

import docker
import pytest

from nb2container.drift import check, differences
from nb2container.engine import Engine
from nb2container.errors import FreezeError
from nb2container.model import FrozenEnvironment, Pin
from nb2container.progress import SilentProgress
from tests.conftest import NOTEBOOKS, Built, NotebookBuilds, cli


def lock_of(built: Built) -> FrozenEnvironment:
    pins = tuple(Pin(name, version, "", "") for name, version in built.report["packages"].items())
    return FrozenEnvironment(built.report["python"], pins, ())


@pytest.mark.kernel
def test_freeze_lists_python_and_the_locked_packages() -> None:
    pytest.importorskip("numpy", reason="lookup_closures.ipynb needs numpy (the notebooks' extra)")
    result = cli("freeze", NOTEBOOKS / "lookup_closures.ipynb", "--json")
    assert result.returncode == 0, result.stderr
    frozen = json.loads(result.stdout)
    assert frozen["python"] == platform.python_version() and frozen["function"] == "assign"
    names = {p["name"] for p in frozen["packages"]}
    assert {"numpy", "cloudpickle", "joblib"} <= names and set(frozen["roots"]) <= names  # its objects' too
    assert all(len(p["sha256"]) == 64 for p in frozen["packages"])
    assert frozen["cuda"] is None


def test_the_freeze_table_says_why_each_package_is_there() -> None:
    from nb2container.report import frozen_table
    from tests.test_contract import house_capture

    pins = (Pin("numpy", "2.4.6", "numpy-2.4.6-cp311.whl", "a" * 64),
            Pin("scikit-learn", "1.9.1", "scikit_learn-1.9.1-cp311.whl", "b" * 64))
    table = frozen_table(house_capture(Path("/nowhere"), []), FrozenEnvironment("3.11.7", pins, ("scikit-learn",)))
    assert "Python 3.11.7" in table and "2 package(s)" in table and "CUDA: none (CPU only)" in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith(("numpy", "scikit-learn"))}
    assert "imported" in rows["scikit-learn"] and "required" in rows["numpy"]


@pytest.mark.kernel
def test_rendering_twice_gives_identical_folders(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="churn_helpers.ipynb needs scikit-learn (the notebooks' extra)")
    for name in ("first", "second"):  # two captures, each in a fresh kernel
        result = cli("render", NOTEBOOKS / "churn_helpers.ipynb", "--output", tmp_path / name)
        assert result.returncode == 0, result.stderr
    comparison = filecmp.dircmp(tmp_path / "first", tmp_path / "second")

    def same(c: filecmp.dircmp[str]) -> bool:
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        return not (c.left_only or c.right_only or mismatch or errors) and all(
            same(sub) for sub in c.subdirs.values())

    assert same(comparison)


def test_drift_names_what_differs_from_the_lock() -> None:
    frozen = FrozenEnvironment("3.11.7", (Pin("numpy", "2.4.6", "", ""), Pin("scikit_learn", "1.9.1", "", "")), ())
    assert differences(frozen, "3.11.7", {"numpy": "2.4.6", "scikit-learn": "1.9.1", "pip": "24.0"}) == []
    found = differences(frozen, "3.11.8", {"numpy": "2.4.5", "extra": "1.0"})
    assert found == ["Python is 3.11.8 in the image, 3.11.7 in the lock",
                     "numpy is 2.4.5 in the image, 2.4.6 in the lock",
                     "scikit_learn 1.9.1 is in the lock but not installed",
                     "extra 1.0 is installed but not in the lock"]


def test_tampered_package_fails_the_drift_check_by_name(
    house_build: Built, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    assert check(Engine(), house_build.tag, lock_of(house_build)) == []  # the real image passes
    folder = tmp_path / "tampered"
    shutil.copytree(house_build.folder, folder)
    joblib_version = house_build.report["packages"]["joblib"]
    with (folder / "Dockerfile").open("a") as dockerfile:
        dockerfile.write(f"USER root\nRUN sed -i 's/^Version: {joblib_version}$/Version: 0.0.1/' "
                         f"/opt/venv/lib/python3.*/site-packages/joblib-{joblib_version}.dist-info/METADATA\n"
                         "USER 10001:10001\n")
    image, _ = docker_client.images.build(path=str(folder), rm=True)
    found = check(Engine(), image.id, lock_of(house_build))
    assert f"joblib is 0.0.1 in the image, {joblib_version} in the lock" in found


def test_rendered_folder_builds_with_networking_disabled(
    notebook_builds: NotebookBuilds, docker_client: docker.DockerClient
) -> None:
    built = notebook_builds("lookup_closures.ipynb")  # numpy, joblib, cloudpickle; no system packages
    image, _ = docker_client.images.build(path=str(built.folder), network_mode="none", nocache=True, rm=True)
    assert image.attrs["Config"]["User"] == "10001:10001"


def test_shared_libraries_are_read_from_elf_files_and_placed_in_debian_packages() -> None:
    lightgbm = pytest.importorskip("lightgbm", reason="a real wheel's ELF files (the notebooks' extra)")

    from nb2container.cache import wheels as cache_dir
    from nb2container.system_libs import KNOWN_PACKAGES, needed_libraries, wheel_needs

    library = Path(lightgbm.__file__).parent / "lib" / "lib_lightgbm.so"
    assert "libgomp.so.1" in needed_libraries(library.read_bytes())
    assert needed_libraries(b"#!/bin/sh\n") == []
    numpy_wheels = sorted(cache_dir().glob("numpy-*.whl"))
    if numpy_wheels:  # numpy bundles its BLAS: nothing it needs is missing beyond glibc
        assert all(not name.startswith("libscipy_openblas") for name in wheel_needs(numpy_wheels[-1:]))
    assert KNOWN_PACKAGES["libgomp.so.1"] == "libgomp1"


def test_installed_extras_in_use_join_the_closure() -> None:
    import sys

    from nb2container.freeze import extras_in_use

    pytest.importorskip("lightgbm", reason="a real package with extras (the notebooks' extra)")
    pytest.importorskip("sklearn", reason="a real package with extras (the notebooks' extra)")
    used = extras_in_use(sys.executable, ["lightgbm", "joblib"])
    assert "scikit-learn" in used.get("lightgbm", [])  # lightgbm imports sklearn when it is there
    assert "joblib" not in used  # its test/docs extras are not installed


class Warnings(SilentProgress):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_tool_resolutions_are_recorded_so_rebuilds_need_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's exact pins come from the record without asking the index; looser
    requirements ask it, and fall back to the record (with a warning) when it is unreachable."""
    from nb2container.wheelhouse import resolve

    monkeypatch.setenv("NB2C_CACHE_DIR", str(tmp_path))
    version = platform.python_version()
    online = Warnings()
    pinned = resolve(["prometheus-client==0.26.0"], version, "linux/amd64", online)
    loose = resolve(["prometheus-client"], version, "linux/amd64", online)
    assert [(p.name, p.version) for p in pinned] == [("prometheus-client", "0.26.0")]
    assert online.warnings == []

    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no index, and no wheel folder but an empty one
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing"))
    offline = Warnings()
    assert resolve(["prometheus-client==0.26.0"], version, "linux/amd64", offline) == pinned
    assert offline.warnings == []
    assert resolve(["prometheus-client"], version, "linux/amd64", offline) == loose
    assert len(offline.warnings) == 1 and "resolved last time" in offline.warnings[0]

    (tmp_path / "wheels" / pinned[0].wheel).write_bytes(b"changed")  # a record is only as good as its wheels
    with pytest.raises(FreezeError, match="could not be resolved"):
        resolve(["prometheus-client==0.26.0"], version, "linux/amd64", offline)
