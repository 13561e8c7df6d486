"""Secrets never ship: find them in what would enter the image, before anything is written.

What is scanned is exactly what the build folder would carry as text: the constants written
into the generated module (string globals the function reads), the source of the definitions,
and the data files it reads. Three ways to recognise a secret: its name (a global called
``API_TOKEN``, ``db_password``...), a known format, and high entropy (the last two by Yelp's
detect-secrets, with its false-positive filters). A finding refuses the build, naming the
variable and its cell; ``--secret NAME`` has the image read it from its environment instead,
and ``--not-secret NAME`` says a flagged value is fine to ship.
"""

from __future__ import annotations

import ast
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from nb2container.errors import CaptureError, UsageError
from nb2container.model import Capture

# Words that name a secret, at word boundaries of a snake_case or camelCase name.
_SECRET_WORDS = re.compile(
    r"(^|_)(token|secret|passw(or)?d|pwd|passphrase|api_?key|access_?key|private_?key|secret_?key|"
    r"signing_?key|client_?secret|credentials?|auth|bearer|cookie|session_?key|dsn|conn(ection)?_?str(ing)?)($|_)",
    re.IGNORECASE)
_MIN_SECRET_CHARS = 8  # shorter values ("", "none", "test") are settings, not secrets
_MAX_TEXT_FILE_BYTES = 2 * 1024**2


@dataclass(frozen=True)
class Finding:
    name: str | None  # the global whose value it is; None: inside a definition or a data file
    where: str  # for people: "the global `API_TOKEN` (cell 3)", "`predict`'s source", "the data file x"
    kind: str  # how it was recognised


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for item in value for s in _strings(item)]
    return []


def _by_name(name: str, value: object) -> bool:
    return bool(_SECRET_WORDS.search(_snake(name))) and any(
        len(text.strip()) >= _MIN_SECRET_CHARS and " " not in text.strip() for text in _strings(value))


def _detect(text: str, suffix: str = ".py") -> list[tuple[int, str]]:
    """(line, kind) of what detect-secrets finds in ``text``, filters applied."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory(prefix="nb2c-scan-") as folder:
        path = Path(folder) / f"scanned{suffix}"
        path.write_text(text)
        with default_settings():
            found = SecretsCollection()
            found.scan_file(str(path))
    return sorted({(secret.line_number, secret.type) for secrets in found.data.values() for secret in secrets})


def scan(capture: Capture, cell_of: dict[str, int]) -> list[Finding]:
    """What in the capture looks like a secret. ``cell_of``: global -> the cell that assigns it."""
    spec = capture.spec
    findings: list[Finding] = []

    def where(name: str) -> str:
        cell = cell_of.get(name)
        return f"the global `{name}`" + (f" (cell {cell})" if cell else "")

    constants = list(spec.constants)
    for name, text in constants:
        if _by_name(name, ast.literal_eval(text)):
            findings.append(Finding(name, where(name), "its name says it is a secret"))
    lines = [f"{name} = {text}" for name, text in constants]
    for line, kind in _detect("\n".join(lines)):
        name = constants[line - 1][0]
        if not any(f.name == name for f in findings):
            findings.append(Finding(name, where(name), f"its value looks like a secret ({kind})"))
    for source in spec.definitions:
        for line, kind in _detect(source):
            header = source.splitlines()[0].strip().rstrip(":")
            findings.append(Finding(None, f"the source of `{header}`, line {line}",
                                    f"a literal in it looks like a secret ({kind})"))
    for data_file in spec.files:
        path = capture.files_dir / data_file.image_path.lstrip("/")
        if path.stat().st_size > _MAX_TEXT_FILE_BYTES:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary: pickles and models are not text a token is pasted into
        for line, kind in _detect(text, path.suffix or ".txt"):
            findings.append(Finding(None, f"the data file {data_file.path}, line {line}",
                                    f"it looks like a secret ({kind})"))
    return findings


def apply(capture: Capture, secrets: tuple[str, ...], not_secrets: tuple[str, ...],
          cell_of: dict[str, int]) -> Capture:
    """Refuse a secret that would ship; globals named by ``--secret`` are read from the environment.

    Returns the capture with those globals taken out of the module's constants; their values
    travel only in ``Capture.secret_values``, for the smoke run's environment.
    """
    constants = dict(capture.spec.constants)
    for name in secrets:
        if name not in constants or not isinstance(ast.literal_eval(constants[name]), str):
            read = ", ".join(f"`{n}`" for n in sorted(constants)) or "none"
            raise UsageError(
                f"--secret names `{name}`, but `{capture.spec.function}` reads no global string of that "
                f"name (the global strings and constants it reads: {read}). Name a global the function "
                "reads whose value is a string, for example API_TOKEN.")
    findings = [f for f in scan(capture, cell_of) if f.name not in secrets and f.name not in not_secrets]
    if findings:
        first = findings[0]
        listing = "; ".join(f"{f.where}: {f.kind}" for f in findings[:5])
        fix = (f"If it is a secret, build with --secret {first.name}: the image then reads `{first.name}` from "
               f"the environment variable {first.name} at run time (the smoke test passes this kernel's value "
               "to its container only), and deploy/ takes it from a Kubernetes Secret. If it is not, pass "
               f"--not-secret {first.name}." if first.name else
               "Move the value out of the code into a global (a cell that sets it), then build with --secret "
               "NAME so that the image reads it from its environment, or remove it from the file.")
        raise CaptureError(
            f"`{capture.spec.function}` would carry what looks like a secret into the image, where anyone "
            f"with the image can read it: {listing}. Nothing was built. {fix}")
    values = {name: str(ast.literal_eval(constants.pop(name))) for name in secrets}
    spec = replace(capture.spec, constants=tuple(sorted(constants.items())), secrets=tuple(sorted(secrets)))
    return replace(capture, spec=spec, secret_values=values)
