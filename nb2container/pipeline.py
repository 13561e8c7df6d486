"""The whole program: capture -> freeze -> render -> build -> smoke. The CLI and the magic call it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from nb2container import freeze, notebook, render, wheelhouse
from nb2container.engine import Engine
from nb2container.model import BuiltImage, Capture, FrozenEnvironment
from nb2container.options import Options
from nb2container.progress import Progress
from nb2container.report import BuildReport
from nb2container.smoke import smoke_test


@dataclass(frozen=True)
class Rendered:
    capture: Capture
    frozen: FrozenEnvironment
    folder: Path
    tag: str


@contextmanager
def staging_dir() -> Iterator[Path]:
    """Where the kernel writes the capture; removed once the build folder has what it needs."""
    with tempfile.TemporaryDirectory(prefix="nb2container-capture-") as folder:
        yield Path(folder)


def capture_function(options: Options, progress: Progress, staging: Path) -> Capture:
    """Run the notebook in its kernel and capture the function there."""
    capture = notebook.capture_notebook(
        options.notebook, options.function, options.kernel, options.timeout, progress, staging,
        options.max_artifact_mb * 1024**2,
    )
    for artifact in capture.spec.artifacts:
        progress.detail(f"artifact `{artifact.name}`: {artifact.type}, {artifact.format}, "
                        f"{artifact.size_bytes / 1e3:,.0f} kB")
    for data_file in capture.spec.files:
        progress.detail(f"data file {data_file.path} -> {data_file.image_path} "
                        f"({data_file.size_bytes / 1e3:,.1f} kB, {data_file.found})")
    for warning in capture.warnings:
        progress.warn(warning)
    return capture


def render_folder(options: Options, progress: Progress) -> Rendered:
    """capture -> freeze -> render: the build folder, without touching Docker."""
    with staging_dir() as staging:
        capture = capture_function(options, progress, staging)
        return _freeze_and_render(capture, options, progress)


def _freeze_and_render(capture: Capture, options: Options, progress: Progress) -> Rendered:
    closure = freeze.closure(capture.interpreter, capture.modules)
    if closure.unmapped_modules:
        progress.warn("modules that no installed distribution provides (not locked): "
                      + ", ".join(closure.unmapped_modules))
    pins = wheelhouse.fetch(closure.packages, capture.interpreter.python_version,
                            options.platform, progress)
    frozen = FrozenEnvironment(capture.interpreter.python_version, tuple(pins), closure.roots,
                               closure.unmapped_modules)
    function = capture.spec.function
    tag = options.tag or render.default_tag(options.notebook, function)
    folder = options.output or Path("build") / function
    progress.step(f"Rendering the build folder {folder} (Python {frozen.python_version}, "
                  f"{len(pins)} packages, {len(capture.spec.artifacts)} artifact(s))")
    render.render(capture, frozen, folder, tag, options.port)
    return Rendered(capture, frozen, folder, tag)


def run(options: Options, progress: Progress) -> BuildReport:
    """Render, build, and smoke-test; the tag goes to the image only once its smoke test passed."""
    rendered = render_folder(options, progress)
    engine = Engine()
    progress.step(f"Building the image from {rendered.folder}")
    image = engine.build(rendered.folder, progress)
    report = smoke(engine, image, rendered.capture, options, progress)
    report.image = rendered.tag if report.smoke and report.smoke.ok else None
    report.packages, report.folder = rendered.frozen.packages, str(rendered.folder)
    if report.image:
        engine.tag(image.id, rendered.tag)
        progress.step(f"Tagged {rendered.tag} ({image.size_bytes / 1e6:.0f} MB)")
    return report


def test_image(options: Options, image_reference: str, progress: Progress) -> BuildReport:
    """Smoke an existing image against the notebook's calls (``nb2container test``)."""
    with staging_dir() as staging:
        capture = capture_function(options, progress, staging)
    engine = Engine()
    report = smoke(engine, engine.inspect(image_reference), capture, options, progress)
    report.image = image_reference
    return report


def smoke(engine: Engine, image: BuiltImage, capture: Capture, options: Options,
          progress: Progress) -> BuildReport:
    if not capture.examples:
        progress.warn(f"the notebook never calls `{capture.spec.function}`, so only the health "
                      "check can be run; add a cell that calls it to have the image checked")
    elif capture.calls_total > len(capture.examples):
        progress.warn(f"{capture.calls_total} calls were made; the first {len(capture.examples)} "
                      "are replayed")
    result = smoke_test(engine, image.id, capture.examples, capture.spec.parameters,
                        capture.spec.function, options.port, options.rel_tol, options.abs_tol,
                        progress)
    return BuildReport(
        notebook=str(capture.notebook), function=capture.spec.function, image=None,
        image_id=image.id, size_bytes=image.size_bytes,
        python=capture.interpreter.python_version, packages={}, folder=None, smoke=result,
        artifacts=[asdict(a) for a in capture.spec.artifacts],
        files=[asdict(f) for f in capture.spec.files], warnings=list(capture.warnings),
    )
