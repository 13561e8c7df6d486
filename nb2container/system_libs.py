"""The shared libraries the closure's compiled modules need and the base image lacks.

Each wheel's ELF files are read for their ``DT_NEEDED`` entries (a small reader, no tool
needed). Libraries a wheel bundles (``numpy.libs/...``) or the base image has (its
``ldconfig -p``) are fine; the rest are placed in Debian packages (a known table, else
``dpkg -S`` on this host), whose ``.deb`` files are downloaded here with their dependencies
that the base lacks, and installed offline in the image: the build still needs no network.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import zipfile
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path

from nb2container.errors import FreezeError, UsageError
from nb2container.model import SystemPackage
from nb2container.progress import Progress

# Sonames whose Debian package is known (bookworm): the usual suspects of ML wheels.
KNOWN_PACKAGES = {
    "libgomp.so.1": "libgomp1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libstdc++.so.6": "libstdc++6",
    "libatomic.so.1": "libatomic1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libX11.so.6": "libx11-6",
    "libsndfile.so.1": "libsndfile1",
    "libgeos_c.so.1": "libgeos-c1v5",
    "libpq.so.5": "libpq5",
    "libodbc.so.2": "libodbc2",
    "libopenblas.so.0": "libopenblas0",
    "libjpeg.so.62": "libjpeg62-turbo",
    "libpng16.so.16": "libpng16-16",
}
# What every Debian-based image has (glibc, and the C++ runtime that apt itself needs).
_ALWAYS = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libcrypt|ld-linux.*|libgcc_s|libz"
                     r"|libstdc\+\+)\.so")


@dataclass
class SystemNeeds:
    packages: list[SystemPackage] = field(default_factory=list)
    unplaced: dict[str, list[str]] = field(default_factory=dict)  # soname -> the files that need it


def needed_libraries(data: bytes) -> list[str]:
    """The DT_NEEDED sonames of an ELF shared object (empty for anything else)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only: the platforms served
        return []
    order = "<" if data[5] == 1 else ">"
    section_offset = struct.unpack_from(order + "Q", data, 0x28)[0]
    entry_size, count = struct.unpack_from(order + "HH", data, 0x3A)
    sections = [struct.unpack_from(order + "IIQQQQIIQQ", data, section_offset + i * entry_size)
                for i in range(count)]
    names = []
    for section in sections:
        if section[1] != 6:  # SHT_DYNAMIC
            continue
        strings = sections[section[6]][4]  # sh_link -> the string table's offset
        for offset in range(section[4], section[4] + section[5], 16):
            tag, value = struct.unpack_from(order + "qQ", data, offset)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strings + value)
                names.append(data[strings + value:end].decode())
    return names


def wheel_needs(wheels: list[Path]) -> dict[str, list[str]]:
    """Sonames the wheels' compiled files need and no wheel of the closure bundles."""
    needs: dict[str, list[str]] = {}
    bundled: set[str] = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if not re.search(r"\.so(\.\d+)*$", member):
                    continue
                bundled.add(os.path.basename(member))
                for soname in needed_libraries(archive.read(member)):
                    needs.setdefault(soname, []).append(member)
    return {soname: users for soname, users in sorted(needs.items())
            if soname not in bundled and not _ALWAYS.match(soname)}


def resolve(needs: dict[str, list[str]], present: Set[str] | None, base_packages: Set[str] | None,
            cache: Path, progress: Progress, requested: tuple[str, ...] = ()) -> SystemNeeds:
    """Debian packages for the libraries the base lacks, and the ``requested`` ones (system_packages),
    downloaded with their missing dependencies."""
    missing = {s: users for s, users in needs.items()
               if not _ALWAYS.match(s) and (present is None or s not in present)}
    result = SystemNeeds()
    wanted: dict[str, list[str]] = {}
    unknown = [name for name in requested if not _known_package(name)]
    if unknown:
        raise UsageError(f"system_packages names {', '.join(unknown)}, which this machine's apt does not know "
                         f"(Debian {'bookworm'}). Check the name (apt-cache search NAME), or run apt-get update, "
                         "then build again.")
    for name in requested:
        wanted.setdefault(name, []).append("requested (system_packages)")
    for soname, users in missing.items():
        package = KNOWN_PACKAGES.get(soname) or _dpkg_owner(soname)
        if package is None:
            result.unplaced[soname] = users
        else:
            wanted.setdefault(package, []).extend(f"{soname} ({user})" for user in users[:2])
    if not wanted:
        return result
    packages = _with_dependencies(sorted(wanted), set(base_packages or ()))
    progress.step(f"Downloading Debian packages for system libraries: {', '.join(packages)}")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", *packages], cwd=cache, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise FreezeError(f"The Debian packages {', '.join(packages)} could not "
                          f"be downloaded: {done.stderr.strip()[-300:]}. Run `apt-get update` and build again.")
    for package in packages:
        debs = sorted(cache.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        deb = debs[-1]
        version = deb.name.split("_")[1].replace("%3a", ":")
        result.packages.append(SystemPackage(package, version, deb.name,
                                             hashlib.sha256(deb.read_bytes()).hexdigest(),
                                             tuple(wanted.get(package, []))))
    return result


def _known_package(name: str) -> bool:
    done = subprocess.run(["apt-cache", "show", "--no-all-versions", name], capture_output=True, text=True,
                          check=False)
    return done.returncode == 0 and "Package:" in done.stdout


def _dpkg_owner(soname: str) -> str | None:
    """The Debian package that ships ``soname`` on this host (bookworm, like the base)."""
    done = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        package = line.split(":", 1)[0].strip()
        if package and "," not in package:
            return package
    return None


def _with_dependencies(packages: list[str], installed: set[str]) -> list[str]:
    """``packages`` and, recursively, their Depends that the base image does not have."""
    todo, seen = list(packages), set()
    while todo:
        package = todo.pop()
        if package in seen or package in installed:
            continue
        seen.add(package)
        done = subprocess.run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                               "--no-breaks", "--no-replaces", "--no-enhances", package],
                              capture_output=True, text=True, check=False)
        todo += [line.split(":", 1)[1].strip().strip("<>") for line in done.stdout.splitlines()
                 if line.strip().startswith(("Depends:", "PreDepends:"))]
    return sorted(seen)
