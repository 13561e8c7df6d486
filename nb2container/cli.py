"""``nb2container``: build, render and test container images from notebooks."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from nb2container import __version__, config, engines, pipeline, runs, verify
from nb2container.errors import Nb2ContainerError
from nb2container.options import FLAGS, Options, flags_for, given_flags
from nb2container.progress import TerminalProgress
from nb2container.report import NOTHING_COMPARED, BuildReport, frozen_json, frozen_table, smoke_table, stale_table
from nb2container.secret_scan import scrubbed


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="nb2container",
        description="Turn the function a notebook defines into a tested container image.",
    )
    root.add_argument("--version", action="version", version=f"nb2container {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    subcommands = {
        "build": commands.add_parser("build", help="capture, render, build and smoke-test an image"),
        "render": commands.add_parser("render", help="capture and render the build folder only"),
        "test": commands.add_parser("test", help="smoke-test an existing image against the notebook"),
        "freeze": commands.add_parser("freeze", help="show the environment the image would hold: "
                                      "Python and the locked packages the function needs"),
        "config": commands.add_parser(
            "config", help="show the effective settings for a notebook and where each came from",
            description=config.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
    }
    subcommands["test"].add_argument("image", help="image tag or id")
    # The run a JupyterLab server made for this build (server_extension.py): recorded there.
    subcommands["build"].add_argument("--run-folder", type=Path, help=argparse.SUPPRESS)
    for name, command in subcommands.items():
        command.add_argument("notebook", type=Path, help="the .ipynb file")
        for flag in (FLAGS if name == "config" else flags_for(name)):
            command.add_argument(*flag.names, **flag.argparse_kwargs())
    listed = commands.add_parser("runs", help="list the builds recorded here (CLI and notebook), newest first; "
                                 "`runs show ID` prints one", description=runs.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    listed.add_argument("--json", dest="as_json", action="store_true", help="print the runs as JSON")
    listed.add_argument("--runs-dir", type=Path, metavar="DIR", help="the store of builds (default: "
                        "NB2CONTAINER_RUNS_DIR, else nb2container/runs under `jupyter --data-dir`)")
    shown = listed.add_subparsers(dest="runs_command").add_parser("show", help="print one run: its steps, "
                                                                  "warnings and verdict")
    shown.add_argument("run_id", metavar="ID", help="the run's id, or the start of it")
    deploy = commands.add_parser("deploy", help="deploy a build folder's image as a Swarm service (or roll "
                                 "the service to it), and wait until every replica is healthy")
    deploy.add_argument("folder", type=Path, help="the build folder (its deploy/compose.yaml)")
    deploy.add_argument("--swarm", action="store_true", required=True,
                        help="deploy to the swarm of the engine at hand (DOCKER_HOST)")
    deploy.add_argument("--replicas", type=int, help="replicas (default: deploy/compose.yaml's)")
    deploy.add_argument("--publish", type=int, metavar="PORT",
                        help="port published on every swarm node (default: deploy/compose.yaml's)")
    deploy.add_argument("--endpoint-mode", choices=["vip", "dnsrr"],
                        help="vip (default): one virtual IP and the routing mesh, which need the kernel's IPVS; "
                             "dnsrr: the service name resolves to every replica, for clients on its attachable "
                             "overlay network (SERVICE-net) or a load balancer of your own; no published port")
    deploy.add_argument("--init-swarm", action="store_true",
                        help="make this engine a single-node swarm if it is not in one")
    deploy.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    deploy.add_argument("-v", "--verbose", action="store_true", help="show every step")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return _command(args)
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` (a cancel from JupyterLab) cleans up like Ctrl-C
    try:
        return _command(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _command(args: argparse.Namespace) -> int:
    progress = TerminalProgress(verbose=getattr(args, "verbose", False))
    debug = getattr(args, "debug", False)
    options: Options | None = None
    try:
        if args.command == "deploy":
            return _deploy(args, progress)
        if args.command == "runs":
            return _runs(args)
        resolved = config.resolve(given_flags(args), args.notebook.resolve().parent, notebook=args.notebook)
        options = resolved.options
        debug = options.debug
        if args.command == "config":
            print(config.describe(resolved))
            return 0
        if args.command == "render":
            rendered = pipeline.render_folder(options, progress)
            print(f"Build folder ready: {rendered.folder}  (docker build -t {rendered.tag} "
                  f"{rendered.folder})")
            return 0
        if args.command == "freeze":
            capture, frozen = pipeline.frozen_environment(options, progress)
            print(frozen_json(capture, frozen) if getattr(args, "as_json", False) else frozen_table(capture, frozen))
            return 0
        if args.command == "test":
            return _finish(pipeline.test_image(options, args.image, progress), options)
        with runs.recorded(options.notebook, options.function or "", "cli", progress, options.runs_dir,
                           args.run_folder) as recorded:
            try:
                report = pipeline.run(options, recorded)
            except KeyboardInterrupt:  # cleaned up before the run says so
                engines.clean_up_after_interrupt(options.engine)
                raise
            recorded.run.finish(report)
        return _finish(report, options)
    except Nb2ContainerError as error:
        if debug:
            raise
        if args.command in ("build", "test") and options is not None:
            pipeline.write_refusal(options, str(error))
        print(f"\nnb2container: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nnb2container: interrupted", file=sys.stderr)
        return 130


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _runs(args: argparse.Namespace) -> int:
    if args.runs_command == "show":
        print(runs.describe(runs.find(args.run_id, args.runs_dir)))
    elif args.as_json:
        print(json.dumps([asdict(info) for info in runs.listing(args.runs_dir)], indent=1))
    else:
        print(runs.table(runs.listing(args.runs_dir), args.runs_dir))
    return 0


def _deploy(args: argparse.Namespace, progress: TerminalProgress) -> int:
    from nb2container import swarm

    done = swarm.deploy(args.folder, args.replicas, args.init_swarm, progress, publish=args.publish,
                        endpoint_mode=args.endpoint_mode)
    print(f"\nOK: {done.service} serves {done.image} on {done.replicas} healthy replicas "
          f"({done.seconds:.1f} s): {done.endpoint}")
    return 0


def _finish(report: BuildReport, options: Options) -> int:
    """Print the verdict the report decided; the exit code is that verdict."""
    if report.verify is not None:
        print(verify.describe(report.verify) + "\n")
    if report.smoke is not None:
        print(scrubbed(smoke_table(report.smoke), report.hidden))
    elif report.stale and report.image_id is None:  # refused before the build
        print(scrubbed(stale_table(report.stale), report.hidden))
    verdict = report.verdict
    name = Path(report.notebook).name
    if not verdict.ok:
        untagged = "; it was not tagged" if report.image_id and report.folder else ""  # `test` never tags
        image = report.image or (report.image_id or "")[:19]
        subject = f"the image {image}" if image else "nothing was built"
        print(f"\nFAILED: {subject} ({name}){untagged}: " + "; ".join(verdict.reasons) + ".", file=sys.stderr)
        return 1
    if report.smoke is None:
        print(f"\nBuilt {report.image or report.folder} without a smoke test (--no-smoke)." if report.image_id
              else f"\nRendered {report.folder}.")
        return 0
    size = f"{report.size_bytes / 1e6:.0f} MB" if report.size_bytes else "?"
    allowed = f", with {len(report.stale)} stale saved output(s) allowed" if report.stale else ""
    built = report.image or report.image_id
    if verdict.compared:
        print(f"\nOK: {built} {verdict.words} {name} (Python {report.python}, {size}{allowed}).")
    else:
        explained = f": {NOTHING_COMPARED}" if verdict.nothing_compared else "."
        print(f"\nOK: {built} {verdict.words} ({name}; Python {report.python}, {size}){explained}")
    if report.pushed:
        print(f"Pushed: {report.pushed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
