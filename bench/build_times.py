"""Build-time and size figures for the house-price notebook, measured side by side in one run.

    eval "$(scripts/engine.sh)"; .venv/bin/python bench/build_times.py

- cold build: `docker build --no-cache` of the rendered folder (wheels already on the host);
- full `nb2container build` with warm caches (kernel run, capture, build, smoke);
- rebuild after editing only the function's body: layers rebuilt and wall time;
- the image's size next to its base image's, and the installed size of the venv.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "house_prices.ipynb"


def cli(*args: str | Path) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "nb2container", *map(str, args)],
                          capture_output=True, text=True, check=True)
    return time.monotonic() - start, done.stdout + done.stderr


def main() -> None:
    client = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="nb2c-bench-"))
    cli("render", NOTEBOOK, "--output", work / "folder")
    start = time.monotonic()
    image_id = None
    for chunk in client.api.build(path=str(work / "folder"), nocache=True, rm=True, decode=True):
        image_id = chunk.get("aux", {}).get("ID", image_id)
    cold = time.monotonic() - start
    image = client.images.get(image_id)
    base = client.images.get(f"python:{sys.version.split()[0]}-slim-bookworm")

    warm, _ = cli("build", NOTEBOOK, "--tag", "nb2c-bench/house:latest", "--output", work / "warm")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("def predict_price"))
    cell.source = cell.source.replace("    return float(", "    price = float(").rstrip() + "\n    return price"
    edited = work / "house_prices.ipynb"
    nbformat.write(nb, edited)
    rebuild, log = cli("build", edited, "--tag", "nb2c-bench/house:edited", "--output", work / "edited", "-v")
    steps = [line for line in log.splitlines() if line.strip().startswith("| Step ")]
    cached = log.count("Using cache")
    venv = client.containers.run(image.id, ["du", "-sb", "/opt/venv"], remove=True).split()[0].decode()

    print(f"{'measure':52} value")
    print(f"{'cold docker build --no-cache (s)':52} {cold:.1f}")
    print(f"{'nb2container build, warm caches, end to end (s)':52} {warm:.1f}")
    print(f"{'rebuild after editing only the function body (s)':52} {rebuild:.1f}")
    print(f"{'  steps in that rebuild / served from cache':52} {len(steps)} / {cached}")
    print(f"{'image size (MB)':52} {image.attrs['Size'] / 1e6:.0f}")
    print(f"{'base image size (MB)':52} {base.attrs['Size'] / 1e6:.0f}")
    print(f"{'installed closure, /opt/venv (MB)':52} {int(venv) / 1e6:.0f}")


if __name__ == "__main__":
    main()
