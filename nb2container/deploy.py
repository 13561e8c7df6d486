"""The deploy story in the build folder: Kubernetes manifests and a Compose / Swarm file.

Rendered from templates (``templates/deploy/``) into ``deploy/``. Their probes, port, grace
period and security settings are the image's own; their resource requests and limits come
from what the smoke run measured (memory peak, CPU), with headroom. A folder rendered
without a smoke run gets conservative defaults, and says so in the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2container.model import Capture, FrozenEnvironment, Usage
from nb2container.report import Verdict
from nb2container.runtime.layout import IMAGE
from nb2container.templating import environment

PRESTOP_SECONDS = 5  # time for the load balancer to stop routing before SIGTERM
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizing:
    memory_request: str
    memory_limit: str
    cpu_request: str
    cpu_limit: str
    basis: str  # where the figures come from, for the files' comments

    @classmethod
    def from_usage(cls, usage: Usage | None) -> Sizing:
        if usage is None:
            return cls("512Mi", "1Gi", "250m", "1", "defaults: no smoke run measured this image")
        # memory: the peak with half again on top, in 64 MiB steps; the limit twice that
        request_mib = max(128, 64 * math.ceil(usage.memory_peak_bytes * 1.5 / _MIB / 64))
        # CPU: the smoke run's average use (start-up included) with headroom; the limit sets
        # the workers (the server follows the cgroup quota), one per core
        average = usage.cpu_seconds / max(usage.wall_seconds, 0.001)
        request_m = max(250, 50 * math.ceil(average * 1.5 * 1000 / 50))
        limit_cores = max(1, math.ceil(request_m * 2 / 1000))
        basis = (f"measured in the smoke run: memory peak {usage.memory_peak_bytes / _MIB:.0f} MiB, "
                 f"{usage.cpu_seconds:.1f} CPU-s in {usage.wall_seconds:.1f} s")
        return cls(f"{request_mib}Mi", f"{2 * request_mib}Mi", f"{request_m}m", str(limit_cores), basis)


def manifests(capture: Capture, frozen: FrozenEnvironment, image: str, port: int,
              usage: Usage | None, verdict: Verdict | None = None,
              labels: dict[str, str] | None = None) -> dict[str, str]:
    """deploy/ path -> text, rendered from templates/deploy/."""
    name = service_name(capture.spec.function)
    context: dict[str, Any] = {
        "name": name, "image": image, "port": port, "function": capture.spec.function,
        "notebook_name": capture.notebook_name, "notebook_sha256": capture.notebook_sha256,
        "sizing": Sizing.from_usage(usage), "gpu": frozen.cuda is not None,
        "layout": IMAGE, "prestop": PRESTOP_SECONDS,
        "termination_grace": IMAGE.grace_seconds + PRESTOP_SECONDS + 5,
        "secrets": list(capture.spec.secrets),
        # The configuration's labels (on the image too), and its base when it is the team's own.
        "labels": sorted((labels or {}).items()), "base_image": frozen.base_image or "",
        # The report's verdict: files for an image that failed say so at the top.
        "failed": "; ".join(verdict.reasons) if verdict is not None and not verdict.ok else "",
    }
    env = environment()
    return {target: env.get_template(f"deploy/{target}.j2").render(context)
            for target in ("k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml", "k8s/pdb.yaml",
                           "compose.yaml")}


def write(folder: Path, capture: Capture, frozen: FrozenEnvironment, image: str, port: int,
          usage: Usage | None = None, verdict: Verdict | None = None, labels: dict[str, str] | None = None) -> None:
    for target, text in manifests(capture, frozen, image, port, usage, verdict, labels).items():
        path = folder / "deploy" / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def service_name(function: str) -> str:
    """A DNS-1123 name for the Kubernetes objects and the Compose service."""
    cleaned = "".join(c if c.isalnum() else "-" for c in function.lower()).strip("-")
    return (cleaned or "model")[:50]
