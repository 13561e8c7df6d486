"""The image's base: python:X.Y.Z-slim-bookworm, or the platform team's own (``base_image``).

A custom base is inspected before anything is rendered, in one run of a small shell script
inside it: its Python must be the kernel's exact X.Y.Z (the image's environment is a venv of
it) with a pip that can install into a venv (``pip --python``, 22.3+); its C library must be a
glibc as new as the wheels need; when the image needs Debian packages, it must be the Debian
release they were downloaded for; and it must have the tools the Dockerfile runs. One that
cannot work is refused in one paragraph naming what differs. The same inspection gives the
default base's libraries and packages (for the system packages the wheels need).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from nb2container.engines import ContainerEngine
from nb2container.errors import UsageError
from nb2container.model import Pin, default_base

DEBIAN_RELEASE = "bookworm"  # the host's apt downloads the system packages for this release
_MIN_PIP = Version("22.3")  # pip install --python
_TOOLS = ("groupadd", "useradd", "find", "sha256sum")  # what the Dockerfile runs as root
# One container run: each section after its marker; a missing piece prints nothing.
_SCRIPT = r"""
echo '--python'; python -c 'import json, platform, sys; print(json.dumps({"version": platform.python_version(),
    "executable": sys.executable, "libc": platform.libc_ver()}))' 2>/dev/null
echo '--pip'; python -m pip --version 2>/dev/null
echo '--os'; cat /etc/os-release 2>/dev/null
echo '--ldd'; ldd --version 2>&1 | head -n 1
echo '--tools'; for tool in groupadd useradd find sha256sum dpkg; do
    command -v "$tool" >/dev/null 2>&1 && echo "$tool"; done
echo '--ldconfig'; ldconfig -p 2>/dev/null
echo '--dpkg'; dpkg-query -W -f '${Package}\n' 2>/dev/null
"""


@dataclass(frozen=True)
class BaseFacts:
    """What one run inside the base found."""

    reference: str
    image_id: str = ""
    repo_digest: str | None = None
    python: str | None = None  # X.Y.Z of `python` on the PATH
    pip: Version | None = None
    libc: tuple[str, str] = ("", "")  # ("glibc", "2.36"), ("musl", "1.2.4"), or unknown
    os_id: str = ""
    os_like: tuple[str, ...] = ()
    codename: str = ""
    tools: frozenset[str] = frozenset()
    sonames: frozenset[str] = field(default_factory=frozenset)
    packages: frozenset[str] = field(default_factory=frozenset)

    @property
    def digest(self) -> str:
        """For the label: the registry digest when the base came from one, else its image id."""
        return self.repo_digest or self.image_id

    @property
    def debian(self) -> bool:
        return self.os_id == "debian" or "debian" in self.os_like


def inspect(engine: ContainerEngine, reference: str) -> BaseFacts:
    """Run the inspection script in ``reference`` (no network). BuildError when it cannot run at all."""
    image = engine.inspect_image(reference)
    output = engine.run_command(reference, ["sh", "-c", _SCRIPT], network=False)
    sections: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if line.startswith("--") and line[2:] in ("python", "pip", "os", "ldd", "tools", "ldconfig", "dpkg"):
            current = line[2:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    python: dict[str, object] = {}
    if sections.get("python"):
        try:
            python = json.loads(sections["python"][-1])
        except ValueError:
            python = {}
    pip = re.match(r"pip (\S+)", " ".join(sections.get("pip", [])))
    os_release = dict(line.split("=", 1) for line in sections.get("os", []) if "=" in line)
    os_release = {k: v.strip().strip('"') for k, v in os_release.items()}
    libc: tuple[str, ...] = tuple(str(part) for part in python.get("libc") or ("", ""))  # type: ignore[attr-defined]
    if not libc[0]:  # no Python to ask: ldd says
        ldd = " ".join(sections.get("ldd", []))
        found = re.search(r"(GLIBC|GNU libc).*?(\d+\.\d+)", ldd) or re.search(r"musl.*?(\d+\.\d+\.\d+)", ldd)
        libc = ("glibc", found.group(2)) if found and "musl" not in ldd else \
            (("musl", found.group(1)) if found else ("", ""))
    return BaseFacts(
        reference, image.id, image.repo_digest, str(python["version"]) if python.get("version") else None,
        Version(pip.group(1)) if pip else None, (str(libc[0]), str(libc[1])), os_release.get("ID", ""),
        tuple(os_release.get("ID_LIKE", "").split()), os_release.get("VERSION_CODENAME", ""),
        frozenset(sections.get("tools", [])),
        frozenset(line.split()[0] for line in sections.get("ldconfig", [])[1:] if line.strip()),
        frozenset(name.split(":")[0] for name in sections.get("dpkg", []) if name.strip()),
    )


def glibc_needed(pins: list[Pin] | tuple[Pin, ...]) -> Version | None:
    """The newest glibc the wheels' manylinux tags ask for (None: all pure Python)."""
    legacy = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}
    needed: Version | None = None
    for pin in pins:
        try:
            tags = parse_wheel_filename(pin.wheel)[3]
        except ValueError:
            continue
        for tag in tags:
            platform = tag.platform
            found = re.match(r"manylinux_(\d+)_(\d+)_", platform)
            version = f"{found.group(1)}.{found.group(2)}" if found else legacy.get(platform.split("_")[0])
            if version and (needed is None or Version(version) > needed):
                needed = Version(version)
    return needed


def check(facts: BaseFacts, python_version: str, pins: list[Pin] | tuple[Pin, ...]) -> None:
    """Refuse a base the image cannot be built on, naming what differs and what to do."""
    name = facts.reference
    wanted = f"Build your base FROM {default_base(python_version)} (or install Python {python_version} in it), " \
             "or build without base_image."
    if facts.python is None:
        raise UsageError(f"The base image {name} has no `python` on its PATH. The image runs the notebook's "
                         f"function with the base's Python, which must be the kernel's Python {python_version}. "
                         + wanted)
    if facts.python != python_version:
        raise UsageError(f"The base image {name} has Python {facts.python}, and the notebook's kernel ran Python "
                         f"{python_version}: the locked packages and the saved objects are for that exact "
                         f"version. {wanted}")
    if facts.pip is None or facts.pip < _MIN_PIP:
        have = f"pip {facts.pip}" if facts.pip else "no pip"
        raise UsageError(f"The base image {name} has {have}; the build installs the locked wheels offline with "
                         f"the base's pip into a venv (pip --python, pip {_MIN_PIP} or newer). Install pip "
                         f"{_MIN_PIP}+ for its Python in the base.")
    needed = glibc_needed(pins)
    kind, version = facts.libc
    if needed is not None and kind != "glibc":
        raise UsageError(f"The base image {name} has the C library {kind or 'of an unknown kind'} "
                         f"{version}; the locked wheels are manylinux wheels, built for glibc {needed} or newer. "
                         "Use a glibc-based base (Debian, Ubuntu, RHEL-like).")
    if needed is not None and Version(version) < needed:
        raise UsageError(f"The base image {name} has glibc {version}; the locked wheels need glibc {needed} or "
                         "newer. Use a newer base, or pin older versions of the packages in the notebook's "
                         "environment.")
    missing = [tool for tool in _TOOLS if tool not in facts.tools]
    if missing:
        raise UsageError(f"The base image {name} lacks {', '.join(missing)}, which the Dockerfile runs to create "
                         "the image's user and drop setuid bits. Install them in the base (Debian: passwd, "
                         "findutils, coreutils).")


def check_debian(facts: BaseFacts, debian_packages: bool) -> None:
    """Debian packages downloaded on the host install only on that Debian release."""
    name = facts.reference
    if debian_packages and not (facts.debian and facts.codename == DEBIAN_RELEASE and "dpkg" in facts.tools):
        found = f"{facts.os_id or 'an unknown system'} {facts.codename}".strip()
        raise UsageError(f"The image needs Debian packages (downloaded for Debian {DEBIAN_RELEASE}), and the base "
                         f"image {name} is {found}. Use a base on Debian {DEBIAN_RELEASE}, or install those "
                         "packages in your base and leave them out of system_packages.")
