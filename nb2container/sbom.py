"""A CycloneDX SBOM of exactly what the image holds: the base image, the locked wheels (with
their hashes), the server's wheels beside the environment, and the Debian packages added.

Byte-stable like the rest of the folder: no timestamp, and a serial number derived from the
content. Shipped in the build folder and in the image (``IMAGE_PATH``), named by a label.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from packaging.utils import canonicalize_name

import nb2container
from nb2container.model import Capture, FrozenEnvironment, Pin
from nb2container.runtime.layout import IMAGE

FILE = "sbom.cdx.json"
IMAGE_PATH = f"{IMAGE.app}/{FILE}"
SPEC_VERSION = "1.5"
_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def _wheel(pin: Pin, location: str) -> dict[str, Any]:
    purl = f"pkg:pypi/{canonicalize_name(pin.name)}@{pin.version}"
    return {"type": "library", "bom-ref": f"{purl}#{location}", "name": pin.name, "version": pin.version,
            "purl": purl, "hashes": [{"alg": "SHA-256", "content": pin.sha256}],
            "properties": [{"name": "nb2container:wheel", "value": pin.wheel},
                           {"name": "nb2container:installed-in", "value": location},
                           {"name": "nb2container:source", "value": pin.source}]}


def document(capture: Capture, frozen: FrozenEnvironment, server_pins: list[Pin], base_image: str,
             platform: str) -> dict[str, Any]:
    name, _, version = base_image.partition(":")
    arch = _ARCH.get(platform, "amd64")
    components: list[dict[str, Any]] = [{
        "type": "container", "bom-ref": "base-image", "name": name, "version": version,
        "purl": f"pkg:docker/{name}@{version}?arch={arch}"}]
    components += [_wheel(pin, IMAGE.venv) for pin in sorted(frozen.pins, key=lambda p: canonicalize_name(p.name))]
    components += [_wheel(pin, IMAGE.server_libs) for pin in sorted(server_pins, key=lambda p: p.name)]
    components += [{"type": "library", "bom-ref": f"pkg:deb/debian/{p.name}@{p.version}?arch={arch}",
                    "name": p.name, "version": p.version,
                    "purl": f"pkg:deb/debian/{p.name}@{p.version}?arch={arch}",
                    "hashes": [{"alg": "SHA-256", "content": p.sha256}],
                    "properties": [{"name": "nb2container:deb", "value": p.deb}]}
                   for p in sorted(frozen.system_packages, key=lambda p: p.name)]
    content = json.dumps([capture.notebook_sha256, components], sort_keys=True)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, content)}",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "nb2container",
                                      "version": nb2container.__version__}]},
            "component": {"type": "container", "bom-ref": "image", "name": capture.spec.function,
                          "description": f"`{capture.spec.function}` from {capture.notebook_name} "
                                         f"(sha256 {capture.notebook_sha256})"},
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": [c["bom-ref"] for c in components]}],
    }


def text(capture: Capture, frozen: FrozenEnvironment, server_pins: list[Pin], base_image: str,
         platform: str) -> str:
    return json.dumps(document(capture, frozen, server_pins, base_image, platform), indent=2, sort_keys=True) + "\n"
