"""After each build: does the image hold exactly the Python and the packages of the lock?

Runs inside the image (its own interpreter, no network) and compares ``python -V`` and every
installed distribution with the frozen environment. Any difference fails the build, named
(a RUN step added to the Dockerfile, or a tampered wheel: rebuild from an untouched folder).
"""

from __future__ import annotations

import json

from packaging.utils import canonicalize_name

from nb2container import reuse
from nb2container.engines import ContainerEngine
from nb2container.model import BuiltImage, FrozenEnvironment
from nb2container.progress import Progress

# What `python -m venv` itself installs; not part of any closure.
_VENV_TOOLS = {"pip", "setuptools", "wheel"}

_PROBE = (
    "import importlib.metadata as m, json, platform; "
    "print(json.dumps({'python': platform.python_version(), "
    "'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))"
)


def differences(frozen: FrozenEnvironment, python: str, installed: dict[str, str]) -> list[str]:
    """What differs between the lock and what the image holds, one line per package."""
    found = []
    if python != frozen.python_version:
        found.append(f"Python is {python} in the image, {frozen.python_version} in the lock")
    have = {canonicalize_name(name): version for name, version in installed.items()}
    for pin in frozen.pins:
        version = have.pop(canonicalize_name(pin.name), None)
        if version is None:
            found.append(f"{pin.name} {pin.version} is in the lock but not installed")
        elif version != pin.version:
            found.append(f"{pin.name} is {version} in the image, {pin.version} in the lock")
    found += [f"{name} {version} is installed but not in the lock"
              for name, version in sorted(have.items()) if name not in _VENV_TOOLS]
    return found


def check(engine: ContainerEngine, image: str, frozen: FrozenEnvironment) -> list[str]:
    """Every package (or the Python) that drifted from the lock; the report's verdict fails on any."""
    output = engine.run_command(image, ["python", "-c", _PROBE], network=False)
    probe = json.loads(output.strip().splitlines()[-1])
    return differences(frozen, probe["python"], probe["packages"])


def check_or_reuse(engine: ContainerEngine, image: BuiltImage, frozen: FrozenEnvironment, own_template: bool,
                   progress: Progress) -> list[str]:
    """``check``, unless an image with the same layers but its last passed it (reuse.drift_key)."""
    key = reuse.drift_key(image, frozen, own_template)
    if reuse.drift_passed(key):
        progress.reused("the drift check of an image with the same Python and packages layers")
        return []
    found = check(engine, image.id, frozen)
    if not found:
        reuse.keep_drift_pass(key)
    return found
