"""``nb2container``: build, render and test container images from notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nb2container import __version__, pipeline
from nb2container.errors import Nb2ContainerError
from nb2container.options import Options
from nb2container.progress import TerminalProgress
from nb2container.report import BuildReport, smoke_table


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="nb2container",
        description="Turn the function a notebook defines into a tested container image.",
    )
    root.add_argument("--version", action="version", version=f"nb2container {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="capture, render, build and smoke-test an image")
    render = commands.add_parser("render", help="capture and render the build folder only")
    test = commands.add_parser("test", help="smoke-test an existing image against the notebook")
    test.add_argument("image", help="image tag or id")
    for command in (build, render, test):
        command.add_argument("notebook", type=Path, help="the .ipynb file")
        command.add_argument("--function", help="the function to serve (default: the one in a "
                             "cell tagged `serve`, else `predict`)")
        command.add_argument("--kernel", help="kernel name (default: the notebook's kernelspec)")
        command.add_argument("--port", type=int, default=8000, help="port the server listens on "
                             "inside the container (default 8000)")
        command.add_argument("--timeout", type=int, default=600,
                             help="seconds a notebook cell may run (default 600)")
        command.add_argument("--max-artifact-mb", type=int, default=2048, metavar="MB",
                             help="largest object or data file to ship, in MiB (default 2048)")
        command.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        command.add_argument("-v", "--verbose", action="store_true", help="show the full build log")
    for command in (build, render):
        command.add_argument("--tag", help="image tag (default: NOTEBOOK-FUNCTION:latest)")
        command.add_argument("--output", type=Path, help="build folder (default build/FUNCTION)")
        command.add_argument("--platform", default="linux/amd64",
                             choices=["linux/amd64", "linux/arm64"], help="image platform")
    for command in (build, test):
        command.add_argument("--report", type=Path, help="write the JSON report here")
        command.add_argument("--rel-tol", type=float, default=1e-6,
                             help="relative tolerance for numbers (default 1e-6)")
        command.add_argument("--abs-tol", type=float, default=1e-9,
                             help="absolute tolerance for numbers (default 1e-9)")
    return root


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        notebook=args.notebook,
        function=args.function,
        tag=getattr(args, "tag", None),
        output=getattr(args, "output", None),
        report=getattr(args, "report", None),
        port=args.port,
        kernel=args.kernel,
        timeout=args.timeout,
        rel_tol=getattr(args, "rel_tol", 1e-6),
        abs_tol=getattr(args, "abs_tol", 1e-9),
        platform=getattr(args, "platform", "linux/amd64"),
        max_artifact_mb=args.max_artifact_mb,
        debug=args.debug,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = options_from(args)
    progress = TerminalProgress(verbose=args.verbose)
    try:
        if args.command == "render":
            rendered = pipeline.render_folder(options, progress)
            print(f"Build folder ready: {rendered.folder}  (docker build -t {rendered.tag} "
                  f"{rendered.folder})")
            return 0
        if args.command == "test":
            return _finish(pipeline.test_image(options, args.image, progress), options)
        return _finish(pipeline.run(options, progress), options)
    except Nb2ContainerError as error:
        if options.debug:
            raise
        print(f"\nnb2container: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nnb2container: interrupted", file=sys.stderr)
        return 130


def _finish(report: BuildReport, options: Options) -> int:
    if options.report:
        report.write(options.report)
    assert report.smoke is not None
    print(smoke_table(report.smoke))
    if report.smoke.ok:
        size = f"{report.size_bytes / 1e6:.0f} MB" if report.size_bytes else "?"
        print(f"\nOK: {report.image or report.image_id} reproduces {Path(report.notebook).name} "
              f"(Python {report.python}, {size}).")
        return 0
    print(f"\nFAILED: the image {report.image_id[:19] if report.image_id else ''} does not "
          f"reproduce {Path(report.notebook).name}; it was not tagged.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
