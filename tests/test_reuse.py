"""What a rebuild reuses: the freeze, by the kernel environment's fingerprint (reuse.py), the drift
check of the same layers (drift.check_or_reuse), and what the engine's cache gave
(BuiltImage.counted). Pure logic and the file system; no engine, no kernel."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nb2container import drift, reuse
from nb2container.kernel.capture import environment_fingerprint
from nb2container.model import BuiltImage, FrozenEnvironment, KernelInterpreter, Pin
from nb2container.options import Options
from nb2container.progress import SilentProgress


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NB2C_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "wheels"
    folder.mkdir(parents=True)
    (folder / "numpy-2.0.0-py3-none-any.whl").write_bytes(b"wheel")
    return folder


def capture(environment: str = "fingerprint", modules: frozenset[str] = frozenset({"numpy"})) -> Any:
    """What a freeze's key reads of a capture: the kernel's interpreter and the modules used."""
    interpreter = KernelInterpreter("3.11.7", "cpython", "/venv/bin/python", "x86_64", {}, [], environment)
    return SimpleNamespace(interpreter=interpreter, modules=modules)


def frozen(folder: Path, source: str = "index") -> FrozenEnvironment:
    return FrozenEnvironment("3.11.7", (Pin("numpy", "2.0.0", "numpy-2.0.0-py3-none-any.whl", "0" * 64, source),),
                             ("numpy",), wheel_dir=folder)


def test_an_unchanged_environment_reuses_its_freeze_and_any_change_does_not(wheels: Path) -> None:
    options = Options(notebook=None)
    key = reuse.freeze_key(capture(), options, "sha256:base")
    assert reuse.reused_freeze(key) is None  # nothing kept yet
    reuse.keep_freeze(key, frozen(wheels))
    assert reuse.reused_freeze(key) == frozen(wheels)
    assert reuse.freeze_key(capture(), options, "sha256:base") == key
    # each of these freezes anew: a package installed, another import, another base, another platform
    assert reuse.freeze_key(capture(environment="changed"), options, "sha256:base") != key
    assert reuse.freeze_key(capture(modules=frozenset({"numpy", "pandas"})), options, "sha256:base") != key
    assert reuse.freeze_key(capture(), options, "sha256:other") != key
    assert reuse.freeze_key(capture(), Options(notebook=None, platform="linux/arm64"), "sha256:base") != key
    assert reuse.freeze_key(capture(environment=""), options, None) is None  # a kernel that sent none


def test_a_freeze_whose_wheels_are_gone_or_built_locally_is_not_reused(wheels: Path) -> None:
    options = Options(notebook=None)
    key = reuse.freeze_key(capture(), options, None)
    reuse.keep_freeze(key, frozen(wheels))
    (wheels / "numpy-2.0.0-py3-none-any.whl").unlink()  # the cache was cleared
    assert reuse.reused_freeze(key) is None
    other = reuse.freeze_key(capture(environment="editable"), options, None)
    reuse.keep_freeze(other, frozen(wheels, source="local /src/pricing_rules"))  # its source may change unseen
    assert reuse.reused_freeze(other) is None


def test_the_fingerprint_changes_when_a_package_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "notebook-folder"), str(site)])
    before = environment_fingerprint()
    (tmp_path / "notebook-folder").mkdir()
    (tmp_path / "notebook-folder" / "out.csv").write_text("the notebook's own files change nothing")
    assert environment_fingerprint() == before
    (site / "requests-2.32.0.dist-info").mkdir()
    assert environment_fingerprint() != before


def test_the_engines_cache_is_counted_from_the_build_log() -> None:
    log = ["Step 1/4 : FROM python:3.11.7-slim-bookworm", " ---> 1a2b", "Step 2/4 : COPY wheels/ /w/",
           " ---> Using cache", "Step 3/4 : COPY app/ /app/", " ---> 3c4d", "Step 4/4 : USER 10001", " ---> 5e6f"]
    counted = BuiltImage("sha256:x", 1).counted(log, "Step ")
    assert (counted.steps, counted.cached) == (3, 1)  # FROM is no step the cache can save


class ProbeCounter:
    """An engine whose image holds exactly the lock: counts the drift probes it runs."""

    def __init__(self) -> None:
        self.probes = 0

    def run_command(self, image: str, command: list[str], network: bool = True) -> str:
        self.probes += 1
        return '{"python": "3.11.7", "packages": {"numpy": "2.0.0"}}'


def test_the_drift_check_is_reused_only_for_the_same_layers_under_the_functions_files(wheels: Path) -> None:
    engine, lock, progress = ProbeCounter(), frozen(wheels), SilentProgress()
    built = BuiltImage("sha256:a", 1, layers=("base", "venv", "app-1"))
    assert drift.check_or_reuse(engine, built, lock, True, progress) == [] and engine.probes == 1
    edited = BuiltImage("sha256:b", 1, layers=("base", "venv", "app-2"))  # only the function's files differ
    assert drift.check_or_reuse(engine, edited, lock, True, progress) == [] and engine.probes == 1
    other = BuiltImage("sha256:c", 1, layers=("base", "venv-2", "app-2"))  # other packages
    drift.check_or_reuse(engine, other, lock, True, progress)
    assert engine.probes == 2
    drift.check_or_reuse(engine, edited, lock, False, progress)  # the team's own templates: always checked
    assert engine.probes == 3


def test_what_is_kept_for_reuse_is_bounded_least_recently_used_first(
    wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuse, "KEEP", 2)
    engine, lock, progress = ProbeCounter(), frozen(wheels), SilentProgress()

    def later() -> None:  # file times are the kernel's coarse clock: a jiffy apart, so in order
        time.sleep(0.02)

    images = [BuiltImage(f"sha256:{n}", 1, layers=("base", f"venv-{n}", "app")) for n in range(3)]
    for image in images[:2]:
        drift.check_or_reuse(engine, image, lock, True, progress)
        later()
    assert reuse.drift_passed(reuse.drift_key(images[0], lock, True))  # used again: the newest now
    later()
    drift.check_or_reuse(engine, images[2], lock, True, progress)  # a third: the least recently used goes
    assert [reuse.drift_passed(reuse.drift_key(image, lock, True)) for image in images] == [True, False, True]
    keys = [reuse.freeze_key(capture(environment=str(n)), Options(notebook=None), None) for n in range(3)]
    for key in keys:
        reuse.keep_freeze(key, lock)
        later()
    assert [reuse.reused_freeze(key) is not None for key in keys] == [False, True, True]
