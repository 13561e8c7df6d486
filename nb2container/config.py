"""One configuration, three sources, in this order of precedence (last wins):

1. ``nb2container.toml`` beside the notebook (its keys at the top level), else the
   ``[tool.nb2container]`` table of the ``pyproject.toml`` beside it;
2. the environment: ``NB2CONTAINER_<KEY>`` (``NB2CONTAINER_BASE_IMAGE=...``);
3. the flags of the command line or of ``%containerize``.

Every key is a flag of the one table (``options.FLAGS``) and every flag a key, so the three
cannot drift apart. ``nb2container config NOTEBOOK`` prints the effective settings and where
each came from.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from nb2container.errors import UsageError
from nb2container.options import FLAGS, Flag, Options
from nb2container.runtime.layout import IMAGE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "NB2CONTAINER_"
FILE = "nb2container.toml"
PYPROJECT = "pyproject.toml"
KEYS: dict[str, Flag] = {flag.key: flag for flag in FLAGS if flag.configurable}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "default", "nb2container.toml", "pyproject.toml [tool.nb2container]", "NB2CONTAINER_X", "--x"


@dataclass(frozen=True)
class Resolved:
    options: Options
    settings: dict[str, Setting]  # every key, with its effective value and where it came from
    file: Path | None  # the configuration file read, if any


def resolve(flags: Mapping[str, Any], folder: Path, environ: Mapping[str, str] | None = None,
            **fixed: Any) -> Resolved:
    """The effective options for a notebook in ``folder``: defaults, then the file, the
    environment and ``flags`` (Options values by key, as ``options.given_flags`` gives them).
    ``fixed`` (the notebook, the magic's function) is not a setting."""
    environ = os.environ if environ is None else environ
    settings = {key: Setting(getattr(_DEFAULTS, key), "default") for key in KEYS}
    file, table, label = _file(folder)
    for key, raw in table.items():
        flag = _known(key, f"{label} in {file}")
        settings[flag.key] = Setting(_from_file(flag, raw, file, label), label)
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            flag = _known(name[len(ENV_PREFIX):].lower(), f"the environment variable {name}")
            settings[flag.key] = Setting(_from_environment(flag, raw, name), name)
    for key, value in {**flags, **fixed}.items():  # the magic's FUNCTION argument is its --function
        if key in KEYS:
            settings[key] = Setting(value, KEYS[key].names[-1])
    options = replace(_DEFAULTS, **{**{key: setting.value for key, setting in settings.items()}, **fixed})
    check(options, settings)
    return Resolved(options, settings, file)


# What the image's own settings and labels are (templates/Dockerfile.j2): the configuration may not
# set them, or the server would not be the one nb2container built and tested.
RESERVED_ENV_PREFIX = "NB2C_"
RESERVED_ENV = frozenset({"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"})
RESERVED_LABEL_PREFIX = "io.nb2container."
RESERVED_LABELS = frozenset({"org.opencontainers.image.title", "org.opencontainers.image.description",
                             "org.opencontainers.image.base.name", "org.opencontainers.image.base.digest"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# An image reference as engines and registries take it (the distribution project's grammar):
# [host[:port]/]lower/case/path[:tag][@digest].
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# A first part is a registry only with a dot or a port, or as localhost (else it is a path part).
_DOMAIN = rf"(?:localhost(?::[0-9]+)?|{_HOST_PART}(?:\.{_HOST_PART})+(?::[0-9]+)?|{_HOST_PART}:[0-9]+)"
_IMAGE_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
                              r"(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,})?")
# env and labels: a valid name, what one is, the reserved prefix and names, and why they are reserved
_NAMED = {
    "env": (_ENV_NAME, "a variable needs a name of letters, digits and _", RESERVED_ENV_PREFIX, RESERVED_ENV,
            "which is the image's own: the NB2C_* variables configure its server, and PATH and the PYTHON* ones "
            "its environment. Set the server's settings where the image runs (docker run -e, the Kubernetes "
            "manifest), not in the image."),
    "labels": (_LABEL_NAME, "a label needs a name of letters, digits, ., /, _ and -", RESERVED_LABEL_PREFIX,
               RESERVED_LABELS, "which nb2container sets itself (the function, the notebook, the base); choose "
               "another name, such as your company's prefix (com.example.team)."),
}


def check(options: Options, settings: Mapping[str, Setting] | None = None) -> None:
    """Refuse, before any slow work, settings the image cannot take."""
    def where(key: str) -> str:
        setting = (settings or {}).get(key)
        return f" (from {setting.source})" if setting and setting.source != "default" else ""

    for key, (pattern, naming, prefix, names, why) in _NAMED.items():
        for name, value in getattr(options, key).items():
            if not pattern.fullmatch(name) or "\n" in value:
                raise UsageError(f"{key} sets `{name}`{where(key)}: {naming}, and a one-line value.")
            if name.startswith(prefix) or name in names:
                raise UsageError(f"{key} sets `{name}`{where(key)}, {why}")
    bad = [name for name in options.system_packages if not _DEBIAN_NAME.fullmatch(name)]
    if bad:
        raise UsageError(f"system_packages names {', '.join(map(repr, bad))}{where('system_packages')}, which is "
                         "not a Debian package name (lower case letters, digits, +, - and .).")
    for key in ("tag", "push"):
        reference = getattr(options, key)
        if reference is not None and (len(reference) > 255 or not _IMAGE_REFERENCE.fullmatch(reference)):
            raise UsageError(f"{key} is {reference!r}{where(key)}, which is not an image reference an engine takes: "
                             "lower-case name parts (letters and digits, joined by . _ or -) separated by /, "
                             "an optional registry host[:port]/ first, and an optional :tag of letters, digits, "
                             "_ . and - (128 at most). For example team/house-prices:1.0.")
    if options.port == IMAGE.probe_port or not 0 < options.port < 65536:
        raise UsageError(f"port is {options.port}{where('port')}, which the image cannot serve on: the probes "
                         f"(/health, /ready) have port {IMAGE.probe_port} to themselves. Choose another port "
                         "between 1 and 65535.")
    if options.templates is not None and not options.templates.is_dir():
        raise UsageError(f"templates names {options.templates}{where('templates')}, which is not a folder. "
                         "Give the folder that holds your Jinja2 templates (Dockerfile.j2 ...).")


_DEFAULTS = Options(notebook=None)
_FIELDS = {f.name for f in fields(Options)}
assert set(KEYS) <= _FIELDS, set(KEYS) - _FIELDS  # every key is an Options field


def _file(folder: Path) -> tuple[Path | None, dict[str, Any], str]:
    """The configuration file beside the notebook, its table, and how to name it."""
    own, pyproject = folder / FILE, folder / PYPROJECT
    if own.is_file():
        return own, _toml(own), FILE
    if pyproject.is_file():
        table = _toml(pyproject).get("tool", {}).get("nb2container", {})
        if not isinstance(table, dict):
            raise UsageError(f"[tool.nb2container] in {pyproject} must be a table of settings.")
        return (pyproject if table else None), table, f"{PYPROJECT} [tool.nb2container]"
    return None, {}, ""


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path} is not readable TOML ({exc}). Fix it, or move it away, then build again.") from None


def _known(key: str, where: str) -> Flag:
    flag = KEYS.get(key.replace("-", "_"))
    if flag is None:
        near = difflib.get_close_matches(key.replace("-", "_"), KEYS, n=1, cutoff=0.5)
        hint = f" Did you mean `{near[0]}`?" if near else ""
        raise UsageError(f"`{key}` ({where}) is not a setting of nb2container.{hint} The settings are: "
                         f"{', '.join(sorted(KEYS))} (see `nb2container config --help`).")
    return flag


def _from_file(flag: Flag, raw: Any, file: Path | None, label: str) -> Any:
    def wrong(expected: str) -> UsageError:
        return UsageError(f"`{flag.key}` in {file} ({label}) must be {expected}, not {json.dumps(raw, default=str)}.")

    kind = flag.kind
    if kind == "bool" and not isinstance(raw, bool):
        raise wrong("true or false")
    if kind == "int" and (not isinstance(raw, int) or isinstance(raw, bool)):
        raise wrong("an integer")
    if kind == "float" and (not isinstance(raw, (int, float)) or isinstance(raw, bool)):
        raise wrong("a number")
    if kind in ("str", "path") and not isinstance(raw, str):
        raise wrong("a string")
    if kind == "list" and not (isinstance(raw, list) and all(isinstance(v, str) for v in raw)):
        raise wrong("a list of strings")
    if kind == "table" and not (isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values())):
        raise wrong('a table of strings (KEY = "value")')
    if kind == "path" and file is not None:
        return _choice(flag, file.parent / raw)  # relative to the file, not to where the command runs
    if kind == "float":
        return float(raw)
    return _choice(flag, flag.value(raw) if kind in ("list", "table") else raw)


def _from_environment(flag: Flag, raw: str, name: str) -> Any:
    kind = flag.kind
    try:
        if kind == "bool":
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ValueError("use 1 or 0")
            return raw.strip().lower() in _TRUE
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "path":
            return Path(raw)
        if kind == "list":
            return _choice(flag, flag.value(json.loads(raw) if raw.lstrip().startswith("[") else raw.split(",")))
        if kind == "table":
            if raw.lstrip().startswith("{"):
                return dict(json.loads(raw))
            pairs = [item.partition("=") for item in raw.split(",") if item.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ValueError("use KEY=VALUE,KEY=VALUE or a JSON object")
            return {key.strip(): value for key, _, value in pairs}
        return _choice(flag, raw)
    except ValueError as exc:
        raise UsageError(f"The environment variable {name}={raw!r} is not a valid `{flag.key}` ({exc}). "
                         "Fix or unset it, then build again.") from None


def _choice(flag: Flag, value: Any) -> Any:
    choices = flag.kwargs.get("choices")
    if choices and value not in choices:
        raise UsageError(f"`{flag.key}` must be one of {', '.join(choices)}, not {value!r}.")
    return value


def describe(resolved: Resolved) -> str:
    """``nb2container config``: the effective settings, and where each came from."""
    rows = [("setting", "value", "from")]
    for key in sorted(resolved.settings):
        setting = resolved.settings[key]
        value = setting.value
        shown = "" if value in (None, (), {}) else json.dumps(value if not isinstance(value, Path) else str(value))
        rows.append((key, shown, setting.source))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    where = f"configuration file: {resolved.file}" if resolved.file else \
        f"no configuration file ({FILE}, or [tool.nb2container] in {PYPROJECT}, beside the notebook)"
    lines = [where, ""]
    lines += [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows]
    return "\n".join(lines)
