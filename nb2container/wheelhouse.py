"""Resolve and download the wheels of a closure on the host, for the image's platform.

Nothing is resolved at ``docker build`` time: the build folder carries every wheel and the
lock its sha256, and the Dockerfile installs with ``--no-index --require-hashes``.
Downloads are cached between builds (``NB2C_CACHE_DIR``, default ~/.cache/nb2container).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from nb2container import cache
from nb2container.errors import FreezeError
from nb2container.model import Pin
from nb2container.progress import Progress

_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
_GLIBC_MINOR = 36  # Debian bookworm, the base image's distribution


def platform_tags(platform: str) -> list[str]:
    if platform not in _ARCH:
        raise FreezeError(f"Unsupported --platform {platform}; use one of {', '.join(_ARCH)}.")
    arch = _ARCH[platform]
    manylinux = [f"manylinux_2_{minor}_{arch}" for minor in range(_GLIBC_MINOR, 16, -1)]
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    return manylinux + [f"{name}_{arch}" for name in legacy]


def target_tags(python_version: str, platform: str) -> list[Tag]:
    """Wheel tags the image's interpreter accepts, most preferred first."""
    major, minor = (int(part) for part in python_version.split(".")[:2])
    platforms = [*platform_tags(platform), f"linux_{_ARCH[platform]}"]
    return list(cpython_tags((major, minor), platforms=platforms)) + list(
        compatible_tags((major, minor), platforms=platforms)
    )


def fetch(packages: dict[str, str], python_version: str, platform: str, progress: Progress,
          direct_urls: dict[str, dict[str, Any]] | None = None) -> list[Pin]:
    """One wheel per pinned package, downloaded (or taken from the cache), with its sha256.

    Packages installed from a folder (editable or not) or from VCS (PEP 610 ``direct_urls``)
    are built into wheels here instead: no index has them.
    """
    folder = cache.wheels()
    tags = target_tags(python_version, platform)
    built = {name: _build_direct(name, packages[name], record, platform, folder, progress)
             for name, record in sorted((direct_urls or {}).items()) if name in packages}
    missing = [n for n, v in packages.items()
               if n not in built and _best_wheel(folder, n, v, tags) is None]
    if missing:
        progress.step(f"Downloading {len(missing)} wheel(s) for {platform}, Python {python_version}")
        _download(missing, packages, python_version, platform, folder)
    pins = list(built.values())
    for name, version in packages.items():
        if name in built:
            continue
        wheel = _best_wheel(folder, name, version, tags)
        if wheel is None:
            raise FreezeError(
                f"No wheel of {name}=={version} fits the image (Python {python_version}, "
                f"{platform}). Install a version of {name} that publishes wheels for this "
                "platform in the notebook's environment, re-run the notebook, and build again."
            )
        pins.append(Pin(name, version, wheel.name, _sha256(wheel)))
    return pins


def obtainable(name: str, version: str, python_version: str, platform: str) -> bool:
    """Whether a wheel of exactly ``name==version`` for the image is in the cache or can be
    downloaded from the configured package sources (it is then in the cache)."""
    folder = cache.wheels()
    if _best_wheel(folder, name, version, target_tags(python_version, platform)) is not None:
        return True
    return _pip([*_download_command(python_version, platform, folder, deps=False), f"{name}=={version}"]) == ""


def _build_direct(name: str, version: str, record: dict[str, Any], platform: str, folder: Path,
                  progress: Progress) -> Pin:
    """Build the wheel of a package installed from a folder or VCS, as installed in the kernel."""
    url = str(record.get("url", ""))
    vcs = record.get("vcs_info")
    if vcs:
        target, source = f"{vcs['vcs']}+{url}@{vcs.get('commit_id', '')}", f"vcs {url}@{vcs.get('commit_id', '')}"
    elif url.startswith("file://"):
        target = urllib.parse.unquote(url.removeprefix("file://"))
        source = f"local {target}"
    else:
        target, source = url, f"url {url}"
    progress.detail(f"building {name} {version} from {source.split(' ', 1)[1]} (not on the index)")
    with tempfile.TemporaryDirectory(prefix="nb2container-wheel-") as scratch:
        error = _pip([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                      "-w", scratch, target])
        wheels = list(Path(scratch).glob("*.whl"))
        if error or len(wheels) != 1:
            raise FreezeError(
                f"{name} {version} was installed from {source.split(' ', 1)[1]}, not from the package "
                f"index, and building its wheel failed ({error or 'no wheel'}). Make sure the folder "
                "(or repository) still holds that version and builds with `pip wheel`, then build again."
            )
        wheel = wheels[0]
        if not any(tag.platform == "any" for tag in parse_wheel_filename(wheel.name)[3]) and \
                _ARCH.get(platform) != os.uname().machine:
            raise FreezeError(f"{name} from {source.split(' ', 1)[1]} has compiled code, and this machine "
                              f"cannot build it for {platform}. Build the image on a {platform} machine.")
        shutil.copyfile(wheel, folder / wheel.name)  # replaces an older build of the same version
    return Pin(name, version, wheel.name, _sha256(folder / wheel.name), source)


def _best_wheel(folder: Path, name: str, version: str, tags: list[Tag]) -> Path | None:
    rank = {tag: i for i, tag in enumerate(tags)}
    best: tuple[int, Path] | None = None
    for path in folder.glob("*.whl"):
        try:
            wheel_name, wheel_version, _, wheel_tags = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if wheel_name != canonicalize_name(name) or wheel_version != Version(version):
            continue
        score = min((rank[t] for t in wheel_tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, path)
    return best[1] if best else None


def resolve(requirements: list[str], python_version: str, platform: str, progress: Progress) -> list[Pin]:
    """Resolve ``requirements`` with their dependencies (pip's resolver) for the image, and pin them.

    For tools added beside the frozen environment (never into it): the server in every image,
    and the kernel and nbval that --verify-notebook runs in a sibling image. Wheels are cached
    like the rest, and so is the resolution: exact pins are resolved once per Python and
    platform, so a rebuild with warm caches needs no index; looser requirements are resolved
    afresh and fall back to the last resolution when the index cannot be reached.
    """
    folder = cache.wheels()
    record = folder / _resolution_name(requirements, python_version, platform)
    if all(_EXACT_PIN.fullmatch(requirement) for requirement in requirements) and \
            (recorded := _recorded_pins(record, folder)):
        return recorded
    progress.step(f"Resolving {', '.join(requirements)} for {platform}, Python {python_version}")
    done = subprocess.run([*_download_command(python_version, platform, folder, deps=True), *requirements],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if recorded := _recorded_pins(record, folder):
            progress.warn(f"{', '.join(requirements)} could not be resolved ({_pip_error(done.stderr)}); "
                          f"using the versions resolved last time: "
                          f"{', '.join(f'{p.name}=={p.version}' for p in recorded)}")
            return recorded
        raise FreezeError(f"{', '.join(requirements)} could not be resolved as wheels for the image: "
                          f"{_pip_error(done.stderr)}")
    wheels = sorted({Path(m) for m in re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", done.stdout)})
    pins = []
    for wheel in wheels:
        name, version, _, _ = parse_wheel_filename(wheel.name)
        pins.append(Pin(str(name), str(version), wheel.name, _sha256(wheel)))
    record.write_text(json.dumps([dataclasses.asdict(pin) for pin in pins], indent=1) + "\n")
    return pins


_EXACT_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+")


def _resolution_name(requirements: list[str], python_version: str, platform: str) -> str:
    major, minor = python_version.split(".")[:2]
    key = "\n".join([*sorted(requirements), f"cp{major}{minor}", platform])
    return f"resolved-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _recorded_pins(record: Path, folder: Path) -> list[Pin] | None:
    """The pins resolved last time, when every wheel is still in the cache, unchanged."""
    try:
        pins = [Pin(**fields) for fields in json.loads(record.read_text())]
    except (OSError, ValueError, TypeError):
        return None
    for pin in pins:
        wheel = folder / pin.wheel
        if not wheel.is_file() or _sha256(wheel) != pin.sha256:
            return None
    return pins or None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_command(python_version: str, platform: str, folder: Path, deps: bool) -> list[str]:
    major, minor = python_version.split(".")[:2]
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(folder),
               "--python-version", f"{major}.{minor}", "--implementation", "cp",
               "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none"]
    if not deps:
        command.append("--no-deps")
    for tag in platform_tags(platform):
        command += ["--platform", tag]
    return command


def _download(names: list[str], packages: dict[str, str], python_version: str, platform: str,
              folder: Path) -> None:
    base = _download_command(python_version, platform, folder, deps=False)
    requirements = [f"{name}=={packages[name]}" for name in names]
    if _pip(base + requirements) == "":
        return
    for requirement in requirements:  # find the culprit; build from source when it is ours to build
        error = _pip([*base, requirement])
        if error and not _build_locally(requirement, platform, folder):
            raise FreezeError(
                f"{requirement} could not be downloaded as a wheel for the image ({error}). "
                "Check that this exact version is on the package index; if it was installed "
                "from a local folder or git, reinstall it from the index or pin a released version."
            )


def _build_locally(requirement: str, platform: str, folder: Path) -> bool:
    """Build a wheel from the sdist, possible only when the image's platform is the host's."""
    if _ARCH.get(platform) != os.uname().machine:
        return False
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder), requirement]
    return _pip(command) == ""


def _pip(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    return _pip_error(done.stderr)


def _pip_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ERROR")]
    return (lines[-1] if lines else stderr.strip()[-300:]).removeprefix("ERROR: ")
