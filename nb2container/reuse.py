"""What a rebuild takes from an earlier build instead of doing it again: the frozen environment,
and the drift check of the same Python and packages layers.

Editing only the function and containerizing again should not freeze the environment again:
the freeze (the closure from pipdeptree, the wheels and their hashes, the Debian packages their
shared libraries need, the GPU decisions) depends only on the kernel's environment, the modules
the function imports, the base image and the settings below. When none of them changed, the
frozen environment of the earlier build is taken as it was (kept under the cache folder, one
small file per key). The environment is named by its fingerprint
(``kernel/capture.environment_fingerprint``); packages built here from a folder or a VCS checkout
are never reused, since their source can change without the environment noticing.

The drift check (drift.py) probes the image's Python and packages; with nb2container's own
Dockerfile the last layer holds only the function's files under /app (the spec, the module, the
SBOM), which the probe does not read, so an image whose other layers passed it has nothing new
to check. Each kind of thing kept is a folder of the cache, one file per key (a sha256 of the
facts it depends on), the least recently used pruned past KEEP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
from pathlib import Path

from nb2container import cache
from nb2container.model import BuiltImage, Capture, FrozenEnvironment
from nb2container.options import Options

KEEP = 50  # of each kind (freezes, drift passes) kept; the least recently used go first


def freeze_key(capture: Capture, options: Options, base_id: str | None) -> str | None:
    """The key of a freeze, or None when it must not be reused (no fingerprint from the kernel)."""
    interpreter = capture.interpreter
    if not interpreter.environment:
        return None
    facts = {"interpreter": [interpreter.executable, interpreter.python_version, interpreter.implementation,
                             interpreter.machine, interpreter.environment, sorted(interpreter.gpu_used)],
             "modules": sorted(capture.modules), "platform": options.platform, "gpus": options.gpus,
             "base": [options.base_image, base_id], "system_packages": sorted(options.system_packages)}
    return _key(facts)


def reused_freeze(key: str | None) -> FrozenEnvironment | None:
    """The earlier build's freeze for this key, if its wheels and packages are all still here."""
    if key is None:
        return None
    try:
        frozen = pickle.loads(_freeze_path(key).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    if not isinstance(frozen, FrozenEnvironment):
        return None
    wheels = [frozen.wheel_dir / pin.wheel for pin in frozen.pins]
    debs = [frozen.deb_dir / package.deb for package in frozen.system_packages]
    if not all(path.is_file() for path in (*wheels, *debs)):  # the cache was cleared since
        return None
    _freeze_path(key).touch()
    return frozen


def keep_freeze(key: str | None, frozen: FrozenEnvironment) -> None:
    """Keep a freeze for the next build, unless a pin was built from a folder or a checkout."""
    if key is None or any(pin.source != "index" for pin in frozen.pins):
        return
    path = _freeze_path(key)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(pickle.dumps(frozen))
    temporary.replace(path)  # whole or not at all: a build beside this one may read it
    _prune(path.parent, "*.pickle")


def drift_key(image: BuiltImage, frozen: FrozenEnvironment, own_template: bool) -> str | None:
    """The key of an image's drift check: all its layers but the last, and the lock. None when the
    check must run (a team's own Dockerfile may put anything in its last layer)."""
    if not own_template or len(image.layers) < 2:
        return None
    return _key([image.layers[:-1], frozen.python_version, [(p.name, p.version, p.sha256) for p in frozen.pins]])


def drift_passed(key: str | None) -> bool:
    """Whether an image with this key passed the drift check before."""
    if key is None or not (marker := cache.folder("drift") / key).exists():
        return False
    marker.touch()
    return True


def keep_drift_pass(key: str | None) -> None:
    if key is None:
        return
    marker = cache.folder("drift") / key
    marker.touch()
    _prune(marker.parent, "*")


def _key(facts: object) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _freeze_path(key: str) -> Path:
    return cache.folder("freezes") / f"{key}.pickle"


def _prune(folder: Path, pattern: str) -> None:
    kept = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
