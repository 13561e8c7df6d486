"""The suite's own housekeeping: untagged images that earlier runs left in the private engine
are removed, while a young one (another session's build waiting for its smoke test) stays."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
import uuid

import docker
import docker.errors
import pytest

from tests.conftest import tidy_engine


def _load_untagged(client: docker.DockerClient, created: str) -> str:
    """Load a one-layer image with no tag, created at ``created`` (what `until` filters on)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        marker = uuid.uuid4().hex.encode()  # a fresh image id every time
        info = tarfile.TarInfo("marker")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    layer_bytes = layer.getvalue()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created, "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
    }).encode()
    config_id = hashlib.sha256(config).hexdigest()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in ((f"{config_id}.json", config), ("layer.tar", layer_bytes),
                           ("manifest.json", json.dumps([{"Config": f"{config_id}.json", "RepoTags": None,
                                                          "Layers": ["layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    client.images.load(archive.getvalue())
    return f"sha256:{config_id}"


def test_tidy_removes_old_untagged_images_and_keeps_young_ones(docker_client: docker.DockerClient) -> None:
    old = _load_untagged(docker_client, "2020-01-01T00:00:00Z")
    young = _load_untagged(docker_client, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        assert docker_client.images.get(old).tags == []
        tidy_engine()
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(old)
        assert docker_client.images.get(young).id == young
    finally:
        for image in (old, young):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image, force=True)
