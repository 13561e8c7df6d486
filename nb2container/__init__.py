"""nb2container: turn the function a notebook defines into a tested container image.

Kept import-light on purpose: the kernel side (``nb2container.kernel``) is imported
inside the user's kernel, which must not pay for docker or jinja2.
"""

from __future__ import annotations

__version__ = "0.1.0"
