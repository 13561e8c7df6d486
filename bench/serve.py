"""Serving throughput and latency: the image's server next to FastAPI + uvicorn, Flask +
gunicorn and Flask under granian (a Rust HTTP server's WSGI interface) serving the same
house-price model, measured side by side in one run.

    eval "$(scripts/engine.sh)"
    .venv/bin/pip install -e '.[bench]'; apt-get install -y wrk
    .venv/bin/python bench/serve.py [--seconds 8] [--rounds 3]

Every server listens on loopback: the images run with the host's network (no port proxy, no
NAT), the baselines run on the host from the same generated module and model file, with the
same Python and package versions. One load generator (wrk, one thread, keep-alive, the same
request body) drives them all; the runs are interleaved (round after round over every server)
and the median round is reported. Server overhead is the p50 latency at concurrency 1 minus
the in-process cost of one call of the function.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "house_prices.ipynb"
BODY = '{"area_sqft": 1500, "num_bedrooms": 3}'


@dataclass
class Server:
    name: str
    port: int
    setting: str


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def build(tag: str, folder: Path, *flags: str) -> None:
    subprocess.run([sys.executable, "-m", "nb2container", "build", NOTEBOOK, "--tag", tag, "--output", folder,
                    *flags], check=True, capture_output=True)


def wait_ready(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=BODY.encode() if path == "/predict"
                                             else None, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} never answered {path}")


@contextlib.contextmanager
def servers(work: Path) -> Iterator[list[Server]]:
    client = docker.from_env()
    running: list[Server] = []
    handles: list[Any] = []  # containers and processes, stopped at the end
    app = work / "app"
    try:
        for tag, port, name, setting in (
            ("nb2c-bench/house:latest", 18001, "nb2container",
             "gunicorn GuardedWorker (threads read, main thread calls), 2 workers (the CPU limit)"),
            ("nb2c-bench/house-batch:latest", 18002, "nb2container --batch",
             "gunicorn threads, 2 workers, model calls batched"),
        ):
            handles.append(client.containers.run(tag, detach=True, network_mode="host", read_only=True,
                                                 environment={"NB2C_PORT": str(port), "NB2C_ACCESS_LOG": "0",
                                                              "NB2C_PROBE_PORT": str(port + 100)}))
            wait_ready(port, "/ready")
            running.append(Server(name, port, setting))
        env = {**os.environ, "NB2C_BENCH_APP": str(app), "PYTHONPATH": str(ROOT / "bench")}
        python_bin = Path(sys.executable).parent
        for command, port, name, setting in (
            ([python_bin / "uvicorn", "baseline_apps:fastapi_app", "--port", "18003", "--log-level", "warning",
              "--no-access-log"], 18003, "FastAPI + uvicorn", "uvicorn, 1 process (its default)"),
            ([python_bin / "uvicorn", "baseline_apps:fastapi_app", "--port", "18004", "--log-level", "warning",
              "--no-access-log", "--workers", "2"], 18004, "FastAPI + uvicorn -w2", "uvicorn, 2 processes"),
            ([python_bin / "gunicorn", "baseline_apps:flask_app", "-b", "127.0.0.1:18005", "-w", "2",
              "--log-level", "warning"], 18005, "Flask + gunicorn", "gunicorn sync, 2 workers"),
            ([python_bin / "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", "18006",
              "--workers", "2", "--blocking-threads", "1", "--log-level", "warning", "--no-ws",
              "baseline_apps:flask_app"], 18006, "Flask + granian", "granian WSGI, 2 workers, 1 blocking thread"),
        ):
            running.append(Server(name, port, setting))
            handles.append(subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
            wait_ready(port, "/predict")
        yield running
    finally:
        for handle in handles:
            if isinstance(handle, subprocess.Popen):
                os.killpg(handle.pid, signal.SIGTERM)
                handle.wait(timeout=30)
            else:
                handle.remove(force=True)


def wrk(port: int, connections: int, seconds: int, script: Path | None, path: str = "/predict") -> Run:
    """One wrk run; without a script it sends GETs."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script)] if script else []
    done = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                          check=True)
    out = done.stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = int(errors.group(1)) if errors else 0
    if socket_errors:
        failures += sum(int(n) for n in socket_errors.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Run(rps, ms("50%"), ms("99%"), failures)


def median(runs: list[Run]) -> Run:
    """The median round by throughput (a real run, so its latencies belong to it)."""
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def in_process_cost(app: Path) -> float:
    """Median seconds of one call of the function in this process (the same module and model)."""
    sys.path.insert(0, str(app))
    from notebook_function import predict_price  # type: ignore[import-not-found]

    timer = timeit.Timer(lambda: predict_price(1500, 3))
    return statistics.median(timer.repeat(repeat=7, number=200)) / 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/serve.py needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="nb2c-bench-") as tmp:
        work = Path(tmp)
        print("building the house-price image, unbatched and --batch ...", file=sys.stderr)
        build("nb2c-bench/house:latest", work / "build")
        build("nb2c-bench/house-batch:latest", work / "build-batch", "--batch")
        shutil.copytree(work / "build" / "app", work / "app")
        shutil.copytree(work / "build" / "artifacts", work / "app" / "artifacts")
        cost = in_process_cost(work / "app")
        script = work / "post.lua"
        script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\n"
                          "wrk.headers['Content-Type'] = 'application/json'\n")
        ours = {"nb2container", "nb2container --batch"}
        results: dict[tuple[str, int], list[Run]] = {}
        ceiling: dict[str, list[Run]] = {}
        with servers(work) as running:
            for _ in range(args.rounds):  # interleaved: every server once per round
                for connections in (1, 8, 64):  # every server at each concurrency
                    for server in running:
                        results.setdefault((server.name, connections), []).append(
                            wrk(server.port, connections, args.seconds, script))
                for server in running:  # what the server answers when it calls no function at all
                    if server.name in ours:
                        ceiling.setdefault(server.name, []).append(
                            wrk(server.port, 64, args.seconds, None, "/health"))
        settings = {server.name: server.setting for server in running}
    print(f"\nhouse_prices.ipynb predict_price, in-process cost of one call: {cost * 1e3:.3f} ms "
          f"(median); {os.cpu_count()} CPUs; wrk -t1, {args.seconds} s x {args.rounds} interleaved rounds, "
          "median round\n")
    print("| server | setting | conc. | req/s | p50 ms | p99 ms | errors | overhead ms (p50 - in-process) |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, connections), runs in results.items():
        run = median(runs)
        overhead = f"{run.p50_ms - cost * 1e3:.3f}" if connections == 1 else ""
        print(f"| {name} | {settings[name]} | {connections} | {run.rps:,.0f} | {run.p50_ms:.2f} | "
              f"{run.p99_ms:.2f} | {sum(r.errors for r in runs)} | {overhead} |")

    def rps(name: str, connections: int) -> float:
        return median(results[(name, connections)]).rps

    print("\n(target at c=8: at least the best two-process peer's req/s, with a lower p99)")
    for connections in (8, 64):
        ours_run = median(results[("nb2container", connections)])
        for peer in ("FastAPI + uvicorn -w2", "Flask + gunicorn", "Flask + granian", "FastAPI + uvicorn"):
            theirs = median(results[(peer, connections)])
            print(f"nb2container / {peer} at c={connections}: {ours_run.rps / theirs.rps:.2f}x req/s, p99 "
                  f"{ours_run.p99_ms:.2f} vs {theirs.p99_ms:.2f} ms")
    for connections in (8, 64):
        print(f"--batch / unbatched at c={connections}: "
              f"{rps('nb2container --batch', connections) / rps('nb2container', connections):.2f}x (target >= 5x)")
    # No batching can beat the server answering without calling the function: the upper bound.
    for name, runs in ceiling.items():
        top = median(runs).rps
        print(f"{name}, GET /health at c=64 (no function call): {top:,.0f} req/s = "
              f"{top / rps('nb2container', 64):.2f}x the unbatched /predict at c=64; "
              f"5x would need {5 * rps('nb2container', 64):,.0f} req/s")


if __name__ == "__main__":
    main()
