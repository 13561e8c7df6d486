"""The Jinja2 environment every generated file is rendered with (build folder, deploy/, verify image)."""

from __future__ import annotations

from pathlib import Path

import jinja2

import nb2container


def templates_dir() -> Path:
    packaged = Path(nb2container.__file__).parent / "templates"  # inside the wheel
    return packaged if packaged.is_dir() else Path(nb2container.__file__).parent.parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty line
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["dockerfile_string"] = dockerfile_string
    return env


def dockerfile_string(text: str, limit: int = 200) -> str:
    """``text`` as the inside of a double-quoted Dockerfile value: one line, quotes escaped."""
    one_line = " ".join(str(text).split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return one_line.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
