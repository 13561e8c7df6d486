"""The image's fixed layout: its user, its paths, the server runtime's files, the grace period.

One place for each of these facts. The host reads them here (the templates get ``IMAGE`` as
``layout``; render, deploy, verify and the kernel's data-file paths use its fields), and the
server reads them in the image, where this file is ``nb2c_layout.py`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageLayout:
    uid: int = 10001
    gid: int = 10001
    app: str = "/app"  # the generated module, the server runtime, spec.json, artifacts
    venv: str = "/opt/venv"  # the frozen environment: exactly the lock, no pip
    server_libs: str = "/opt/nb2c-server"  # gunicorn and prometheus_client, beside the venv
    workdir: str = "/srv/notebook"  # the notebook's folder: relative paths resolve here
    # The server runtime: nb2container/runtime/NAME.py, copied into the image as nb2c_NAME.py.
    runtime: tuple[str, ...] = ("launcher", "wsgi", "plain_call", "loads", "probes", "budget", "batching",
                                "codecs", "contract", "health", "layout")
    # /health and /ready on a port of their own, served by the arbiter (nb2c_probes.py): what the
    # HEALTHCHECK, compose and the Kubernetes probes use (NB2C_PROBE_PORT)
    probe_port: int = 8081
    grace_seconds: int = 30  # on SIGTERM, how long in-flight requests get (NB2C_GRACE_SECONDS)

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def runtime_files(self) -> tuple[str, ...]:
        return tuple(f"nb2c_{name}.py" for name in self.runtime)

    @property
    def launcher(self) -> str:
        return f"{self.app}/nb2c_launcher.py"

    @property
    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK (Dockerfile, compose, swarm): C modules only, milliseconds of CPU."""
        return ["python", "-I", "-S", f"{self.app}/nb2c_health.py"]


IMAGE = ImageLayout()
