"""Build time of the house-price image with each engine backend, side by side in one run.

    eval "$(scripts/engine.sh)"; eval "$(scripts/podman.sh)"
    .venv/bin/python bench/engines.py [--rounds 2] [--notebook notebooks/house_prices.ipynb]

Each round builds the notebook once with every backend, in turn (so that the machine's noise is
shared): the Docker engine, Podman's Docker-compatible service through the docker SDK, Podman
without a daemon, and Buildah. The first round of a backend may rebuild layers its store lacks;
later rounds show the warm build (only what changed). Reported: the whole `nb2container build`
(kernel, freeze, render, build, drift check, smoke test) and the image build step alone, from the
report's timestamps of the progress lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(notebook: Path, engine: str, environment: dict[str, str], folder: Path) -> tuple[float, float, int]:
    """(whole build seconds, image build step seconds, image bytes)."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "nb2container", "build", str(notebook), "--engine", engine,
                                "--output", str(folder / "build"), "--report", str(folder / "report.json"),
                                "--tag", f"nb2c-bench/{engine}:latest"],
                               env={**os.environ, **environment}, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    step_started = step_ended = None
    for line in process.stderr:
        now = time.monotonic()
        if line.startswith("==> Building the image"):
            step_started = now
        elif line.startswith("==> Checking the image") and step_started is not None:
            step_ended = now
    if process.wait() != 0:
        raise SystemExit(f"the build with {engine} failed; run it by hand to see why")
    whole = time.monotonic() - started
    report = json.loads((folder / "report.json").read_text())
    step = (step_ended or time.monotonic()) - (step_started or started)
    return whole, step, int(report["size_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "house_prices.ipynb")
    args = parser.parse_args()
    if "CONTAINERS_CONF" not in os.environ or "DOCKER_HOST" not in os.environ:
        raise SystemExit('run eval "$(scripts/engine.sh)"; eval "$(scripts/podman.sh)" first')
    with tempfile.TemporaryDirectory(prefix="nb2c-bench-engines-") as scratch:
        socket = Path(scratch) / "podman.sock"
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                                   stderr=subprocess.DEVNULL)
        try:
            while not socket.exists():
                time.sleep(0.1)
            backends = {"docker": ("docker", {}), "podman service (docker SDK)": ("docker", {
                "DOCKER_HOST": f"unix://{socket}"}), "podman": ("podman", {}), "buildah": ("buildah", {})}
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in backends}
            for round_ in range(args.rounds):
                for name, (engine, environment) in backends.items():
                    folder = Path(scratch) / f"{round_}-{engine}-{len(environment)}"
                    folder.mkdir()
                    results[name].append(build(args.notebook, engine, environment, folder))
                    print(f"round {round_ + 1}: {name}: {results[name][-1][0]:.1f} s", file=sys.stderr)
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"{args.notebook.name}, {args.rounds} round(s), backends in turn each round\n")
    print(f"{'backend':<28} {'round':>5} {'whole build s':>14} {'image build s':>14} {'image MB':>9}")
    for name, rounds in results.items():
        for number, (whole, step, size) in enumerate(rounds, start=1):
            print(f"{name:<28} {number:>5} {whole:>14.1f} {step:>14.1f} {size / 1e6:>9.0f}")


if __name__ == "__main__":
    main()
