"""``nb2container``: build, render and test container images from notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nb2container import __version__, pipeline, verify
from nb2container.errors import Nb2ContainerError
from nb2container.options import Options, flags_for
from nb2container.progress import TerminalProgress
from nb2container.report import BuildReport, frozen_json, frozen_table, smoke_table


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
    }
    subcommands["test"].add_argument("image", help="image tag or id")
    for name, command in subcommands.items():
        command.add_argument("notebook", type=Path, help="the .ipynb file")
        for flag in flags_for(name):
            command.add_argument(*flag.names, **flag.kwargs)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = Options.from_namespace(args, no_build=args.command == "render")
    progress = TerminalProgress(verbose=args.verbose)
    try:
        if args.command == "render":
            rendered = pipeline.render_folder(options, progress)
            print(f"Build folder ready: {rendered.folder}  (docker build -t {rendered.tag} "
                  f"{rendered.folder})")
            return 0
        if args.command == "freeze":
            capture, frozen = pipeline.frozen_environment(options, progress)
            print(frozen_json(capture, frozen) if args.as_json else frozen_table(capture, frozen))
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
    if report.verify is not None:
        print(verify.describe(report.verify) + "\n")
    if report.smoke is None:
        print(f"\nBuilt {report.image} without a smoke test (--no-smoke).")
        return 0 if report.verify is None or report.verify.ok else 1
    print(smoke_table(report.smoke))
    if report.verify is not None and not report.verify.ok:
        print(f"\nFAILED: {Path(report.notebook).name} does not reproduce its stored outputs when re-run "
              "inside the image's environment (see the cells above)"
              + ("; the image was not tagged." if report.folder else "."), file=sys.stderr)
        return 1
    if report.smoke.ok:
        size = f"{report.size_bytes / 1e6:.0f} MB" if report.size_bytes else "?"
        print(f"\nOK: {report.image or report.image_id} reproduces {Path(report.notebook).name} "
              f"(Python {report.python}, {size}).")
        return 0
    untagged = "; it was not tagged" if report.folder else ""  # `test` checks an image, never tags
    print(f"\nFAILED: the image {report.image or (report.image_id or '')[:19]} does not "
          f"reproduce {Path(report.notebook).name}{untagged}.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
