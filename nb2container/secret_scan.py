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
import itertools
import json
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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


def _names_a_digest(name: str, value: object) -> bool:
    """``MODEL_SHA256 = "9f86d0..."``: a hex digest whose name says so is a checksum, not a secret."""
    return bool(_DIGEST_NAME.search(_snake(name))) and isinstance(value, str) and bool(
        re.fullmatch(r"(sha\d*[:-])?[0-9a-fA-F]{16,}", value))


_DIGEST_NAME = re.compile(r"(^|_)(sha\d*|md5|digest|hash|checksum|fingerprint)$", re.IGNORECASE)


def _by_name(name: str, value: object) -> bool:
    return bool(_SECRET_WORDS.search(_snake(name))) and any(
        len(text.strip()) >= _MIN_SECRET_CHARS and " " not in text.strip() for text in _strings(value))


def _detect(text: str, suffix: str = ".py", formats_only: bool = False) -> list[tuple[int, str]]:
    """(line, kind) of what detect-secrets finds in ``text``, filters applied; ``formats_only``:
    known token formats alone (strings read out of a pickle have no names, and a model's own
    random-looking strings are not secrets)."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings, transient_settings

    with tempfile.TemporaryDirectory(prefix="nb2c-scan-") as folder:
        path = Path(folder) / f"scanned{suffix}"
        path.write_text(text)
        settings = transient_settings({"plugins_used": _format_plugins()}) if formats_only else default_settings()
        with settings:
            found = SecretsCollection()
            found.scan_file(str(path))
    return sorted({(secret.line_number, secret.type) for secrets in found.data.values() for secret in secrets})


def _format_plugins() -> list[dict[str, str]]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    guesses = ("HighEntropy", "Keyword")
    plugins: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return [{"name": plugin.__name__} for plugin in plugins if not any(guess in plugin.__name__ for guess in guesses)]


def _file_text(path: Path) -> tuple[str, list[int]]:
    """A data file as text whatever its encoding (a byte that is not UTF-8 hides nothing), and for a
    large one only its lines that could hold a secret: a long token of letters and digits, or a
    word that names one (detect-secrets reads a few MB a second). Returns the text and, per line of
    it, the file's line number."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(text) <= _MAX_TEXT_FILE_BYTES:
        return text, list(range(1, len(lines) + 1))
    kept = [(number, line) for number, line in enumerate(lines, start=1) if _CANDIDATE.search(line)]
    return "\n".join(line for _, line in kept), [number for number, _ in kept]


# A token that mixes letters and digits over 16 characters, or a word that names a secret.
_CANDIDATE = re.compile(r"(?=[\w+/=-]*[A-Za-z])(?=[\w+/=-]*\d)[\w+/=-]{16,}|passw|secret|token|api_?key|bearer",
                        re.IGNORECASE)


def pickled_strings(path: Path) -> list[str]:
    """The strings a pickle holds (attribute names and values), read without unpickling it."""
    import pickletools

    found = []
    try:
        for opcode, argument, _ in pickletools.genops(path.read_bytes()):
            if isinstance(argument, str) and ("UNICODE" in opcode.name or opcode.name.endswith("STRING")):
                found.append(argument)
    except Exception:  # joblib writes arrays' bytes inside its stream: the strings before them are read
        pass
    return found


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
        if _names_a_digest(name, ast.literal_eval(constants[line - 1][1])):
            continue
        if not any(f.name == name for f in findings):
            findings.append(Finding(name, where(name), f"its value looks like a secret ({kind})"))
    for source in spec.definitions:
        for line, kind in _detect(source):
            header = source.splitlines()[0].strip().rstrip(":")
            findings.append(Finding(None, f"the source of `{header}`, line {line}",
                                    f"a literal in it looks like a secret ({kind})"))
    for data_file in spec.files:
        path = capture.files_dir / data_file.image_path.lstrip("/")
        text, numbers = _file_text(path)
        for line, kind in _detect(text, path.suffix or ".txt"):
            findings.append(Finding(None, f"the data file {data_file.path}, line {numbers[line - 1]}",
                                    f"it looks like a secret ({kind})"))
    for artifact in spec.artifacts:
        findings += _in_pickle(capture.artifacts_dir / artifact.file, f"the artifact `{artifact.name}`",
                               artifact.name)
    return findings


def _in_pickle(path: Path, where: str, name: str) -> list[Finding]:
    """A secret kept in a pickled object: an attribute whose name says secret, or a known format."""
    strings = pickled_strings(path)
    for key, value in itertools.pairwise(strings):  # a dict's or an object's key, then its value
        if _by_name(key, value) and not re.fullmatch(r"[a-z_][a-z_.]*", value):  # not the next attribute's name
            return [Finding(name, f"{where} (its `{key}`)", "a pickled attribute whose name says it is a secret")]
    lines = [f"value = {json.dumps(text)}" for text in strings if len(text) >= _MIN_SECRET_CHARS]
    return [Finding(name, where, f"a string pickled in it looks like a secret ({kind})")
            for _, kind in _detect("\n".join(lines), ".py", formats_only=True)[:1]]


@dataclass(frozen=True)
class Published:
    """The capture as it may be published (the OpenAPI example, README, golden tests), and what not to
    write anywhere: the values of --secret globals and of secret-like arguments."""

    capture: Capture
    parameters: tuple[str, ...]  # secret-like parameters whose recorded values are redacted
    hidden: tuple[str, ...] = field(repr=False)


def published(capture: Capture) -> Published:
    """A parameter whose name or recorded value looks secret (the scan's rules) is never published:
    its values become a placeholder, with every other place they appear (a result that returns a
    declared secret, a call's text); such calls leave the golden tests. The smoke test still sends
    the real recorded values (from the capture itself)."""
    names = [p.name for p in capture.spec.parameters]
    declared = set(capture.secret_values.values())
    recorded: dict[str, list[str]] = {}
    for example in capture.examples:
        body = example.body if isinstance(example.body, dict) else dict(zip(names, example.body or [], strict=False))
        for name, value in body.items():
            recorded.setdefault(name, []).extend(_strings(value))
    secret = sorted(name for name, values in recorded.items()
                    if _by_name(name, values) or declared & set(values) or _detect(
                        "\n".join(f"value = {json.dumps(v)}" for v in values), ".py", formats_only=True))
    hidden = tuple(sorted({v for name in secret for v in recorded[name] if len(v) >= 4} | declared, key=len,
                          reverse=True))
    if not hidden:
        return Published(capture, (), ())

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for text in hidden:
                value = value.replace(text, PLACEHOLDER)
            return value
        if isinstance(value, dict):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(scrub(item) for item in value)
        return value

    examples = []
    for example in capture.examples:
        public = replace(example, body=scrub(example.body), args=scrub(example.args), kwargs=scrub(example.kwargs),
                         fresh_result=scrub(example.fresh_result), fresh_text=scrub(example.fresh_text),
                         shown=scrub(example.shown), stdout=scrub(example.stdout))
        touched = public != example
        examples.append(replace(public, golden=example.golden and not touched))
    return Published(replace(capture, examples=tuple(examples)), tuple(secret), hidden)


PLACEHOLDER = "[redacted]"  # plain text in JSON, HTML and XML alike


def scrubbed(text: str, hidden: tuple[str, ...]) -> str:
    """``text`` with every hidden value (and its JSON-escaped form) replaced by the placeholder."""
    for value in hidden:
        text = text.replace(value, PLACEHOLDER).replace(json.dumps(value)[1:-1], PLACEHOLDER)
    return text


def check_folder(folder: Path, values: dict[str, str], function: str) -> None:
    """The canary: no file of the build folder (the module, artifacts, data files, the OpenAPI
    document, README, golden tests, Dockerfile labels, SBOM) holds the value of a --secret (or of a
    secret-like argument: ``values`` maps "--secret NAME" or "the argument `x`" to it), in any form
    its bytes take there: a value derived from it (``"Bearer " + API_TOKEN``) is caught too."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for name, value in sorted(values.items()):
            forms = {value.encode(), json.dumps(value)[1:-1].encode()}
            if len(value) >= 4 and any(form in content for form in forms):
                raise CaptureError(_held(str(path.relative_to(folder)), name, function))


def _held(file: str, name: str, function: str) -> str:
    """Where a secret's value was found, and the fix that works there."""
    what = f"the value of {name}"
    if file.startswith("artifacts/"):
        fix = (f"the notebook object `{Path(file).stem}` was built from `{name}` (and is shipped pickled). Build it "
               f"inside `{function}` from `{name}`, so that it is made from the environment when the image runs")
    elif file.startswith("files/"):
        fix = "a data file the function reads holds it. Take the secret out of the file"
    else:
        fix = (f"a recorded call of `{function}` passes or returns it, and calls are published (the OpenAPI "
               "example, README, golden tests). Call the function in the notebook with a placeholder, and "
               "return what the secret gives, never the secret")
    return (f"{file} in the build folder would hold {what}, where anyone with the image or the folder can "
            f"read it: {fix}. Nothing was built, and the last build folder is as it was.")


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
        string = first.name in constants and isinstance(ast.literal_eval(constants[first.name]), str)
        fix = (f"If it is a secret, build with --secret {first.name}: the image then reads `{first.name}` from "
               f"the environment variable {first.name} at run time (the smoke test passes this kernel's value "
               "to its container only), and deploy/ takes it from a Kubernetes Secret. If it is not, pass "
               f"--not-secret {first.name}." if first.name and string else
               f"If it is a secret, keep it in a global string of its own that `{capture.spec.function}` reads "
               f"(TOKEN = os.environ['TOKEN']), build `{first.name}` from it inside the function, and build with "
               f"--secret TOKEN (--secret takes strings only). If it is not, pass --not-secret {first.name}."
               if first.name else
               "Move the value out of the code into a global (a cell that sets it), then build with --secret "
               "NAME so that the image reads it from its environment, or remove it from the file.")
        raise CaptureError(
            f"`{capture.spec.function}` would carry what looks like a secret into the image, where anyone "
            f"with the image can read it: {listing}. Nothing was built. {fix}")
    values = {name: str(ast.literal_eval(constants.pop(name))) for name in secrets}
    spec = replace(capture.spec, constants=tuple(sorted(constants.items())), secrets=tuple(sorted(secrets)))
    return replace(capture, spec=spec, secret_values=values)
