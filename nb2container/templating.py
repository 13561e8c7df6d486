"""The Jinja2 environment every generated file is rendered with (build folder, deploy/, verify image)."""

from __future__ import annotations

from pathlib import Path

import jinja2

import nb2container


def templates_dir() -> Path:
    packaged = Path(nb2container.__file__).parent / "templates"  # inside the wheel
    return packaged if packaged.is_dir() else Path(nb2container.__file__).parent.parent / "templates"


PACKAGED_PREFIX = "nb2container"  # {% extends "nb2container/Dockerfile.j2" %}: the packaged template


def environment(overrides: Path | None = None) -> jinja2.Environment:
    """The packaged templates; with ``overrides`` (templates = "path"), a folder whose files win
    by name and extend the packaged ones through the ``nb2container/`` prefix and their blocks."""
    packaged = jinja2.FileSystemLoader(templates_dir())
    loader: jinja2.BaseLoader = packaged
    if overrides is not None:
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(overrides),
                                      jinja2.PrefixLoader({PACKAGED_PREFIX: packaged}), packaged])
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty line
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["dockerfile_string"] = dockerfile_string
    env.filters["dockerfile_quote"] = dockerfile_quote
    return env


def overridden(overrides: Path) -> list[str]:
    """The packaged templates a folder of overrides replaces, by name."""
    packaged = set(jinja2.FileSystemLoader(templates_dir()).list_templates())
    return sorted(name for name in jinja2.FileSystemLoader(overrides).list_templates() if name in packaged)


def dockerfile_quote(text: str) -> str:
    """``text`` as the inside of a double-quoted Dockerfile value, whole (an ENV or LABEL value)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def dockerfile_string(text: str, limit: int = 200) -> str:
    """``text`` as the inside of a double-quoted Dockerfile value: one line, quotes escaped."""
    one_line = " ".join(str(text).split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return dockerfile_quote(one_line)
