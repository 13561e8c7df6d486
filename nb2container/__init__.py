"""nb2container: turn the function a notebook defines into a tested container image.

Kept import-light on purpose: the kernel side (``nb2container.kernel``) is imported
inside the user's kernel, which must not pay for docker or jinja2.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nb2container``: record the notebook's calls and add ``%containerize``."""
    from nb2container.magic import load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """A Jupyter server loads nb2container's routes (server_extension.py) from here."""
    return [{"module": "nb2container"}]


def _load_jupyter_server_extension(serverapp: object) -> None:
    from nb2container.server_extension import load

    load(serverapp)
