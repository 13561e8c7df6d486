"""The errors nb2container raises. Each message is one paragraph for a data scientist:
what is wrong, where (cell, variable, package), and what to do."""

from __future__ import annotations


class Nb2ContainerError(Exception):
    """Base of every error the tool reports without a traceback."""


class UsageError(Nb2ContainerError):
    """The command line or the notebook path is wrong."""


class CaptureError(Nb2ContainerError):
    """The notebook, or the function in it, cannot be captured."""


class FreezeError(Nb2ContainerError):
    """The kernel's environment cannot be frozen into a lock and a wheelhouse."""


class BuildError(Nb2ContainerError):
    """The image did not build; carries the tail of the build log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n\nLast lines of the build log:\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail


class SmokeTestError(Nb2ContainerError):
    """The container did not start or did not answer like the notebook."""
