"""What the image's HEALTHCHECK costs: wall time and CPU of one probe, measured inside a running
container of the house-price image, next to a probe that imports urllib (what it used to do).

    eval "$(scripts/engine.sh)"
    .venv/bin/python bench/healthcheck.py [--image TAG] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nb2container.runtime.layout import IMAGE  # noqa: E402 - the project's own layout, from this checkout

HEALTHCHECK = IMAGE.healthcheck

URLLIB = ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
# Runs in the container: each probe as a child process, its wall time and its CPU (user + system).
MEASURE = """
import json, resource, subprocess, sys, time
command, runs = json.loads(sys.argv[1]), int(sys.argv[2])
walls, cpus = [], []
for _ in range(runs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.run(command).returncode
    walls.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    assert code == 0, code
print(json.dumps({"wall": walls, "cpu": cpus}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="an image nb2container built (default: build house_prices.ipynb)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    client = docker.from_env()
    image = args.image
    if image is None:
        image = "nb2c-bench/house:latest"
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, "-m", "nb2container", "build", ROOT / "notebooks/house_prices.ipynb",
                            "--tag", image, "--output", Path(folder) / "build"], check=True, capture_output=True)
    container = client.containers.run(image, detach=True, read_only=True)
    try:
        deadline = time.monotonic() + 60
        while container.exec_run(HEALTHCHECK).exit_code != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"{args.runs} probes each, inside a running container of {image}\n")
        print("| probe | wall ms (median) | wall ms (max) | CPU ms (median) |")
        print("|---|---|---|---|")
        for name, command in (("HEALTHCHECK: " + " ".join(HEALTHCHECK), HEALTHCHECK),
                              ("urllib probe (before)", URLLIB)):
            result = container.exec_run(["python", "-c", MEASURE, json.dumps(command), str(args.runs)])
            figures = json.loads(result.output.decode().strip().splitlines()[-1])
            print(f"| {name} | {statistics.median(figures['wall']) * 1e3:.1f} | {max(figures['wall']) * 1e3:.1f} | "
                  f"{statistics.median(figures['cpu']) * 1e3:.1f} |")
    finally:
        container.remove(force=True)


if __name__ == "__main__":
    main()
