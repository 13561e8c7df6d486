"""The whole program: capture -> freeze -> render -> build -> smoke. The CLI and the magic call it.

The only thing that differs between the two is where the capture comes from (a
``Capturer``): the CLI runs the notebook in a fresh kernel; the magic captures from the
live kernel it runs in. Everything after the capture is the same code.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nb2container import (
    base,
    cache,
    cuda,
    deploy,
    drift,
    freeze,
    lean,
    notebook,
    output,
    render,
    reuse,
    secret_scan,
    stale,
    system_libs,
    wheelhouse,
)
from nb2container.engine import split_tag
from nb2container.engines import ContainerEngine, connect, connect_if_any
from nb2container.errors import BuildError, UsageError
from nb2container.model import (
    BuiltImage,
    Capture,
    FrozenEnvironment,
    LeftOut,
    Pin,
    SmokeCase,
    SmokeReport,
    default_base,
)
from nb2container.options import Options
from nb2container.progress import Progress, SilentProgress, WarningsKept
from nb2container.report import BuildReport
from nb2container.smoke import smoke_test
from nb2container.system_libs import SystemNeeds
from nb2container.verify import VerifyReport, verify_notebook

# Given a staging folder (which it may fill with artifacts and data files), returns the capture.
Capturer = Callable[[Path], Capture]


# The image's HTTP server, pinned so that the same capture renders the same folder.
SERVER_REQUIREMENTS = ["gunicorn==27.0.1", "prometheus-client==0.26.0"]


@dataclass(frozen=True)
class Rendered:
    capture: Capture
    frozen: FrozenEnvironment
    folder: Path
    tag: str
    public: secret_scan.Published  # what may be published of the capture, and what is never written


def server_runtime(python_version: str, platform: str, progress: Progress) -> list[Pin]:
    """The server's wheels, resolved for the image (installed beside the frozen environment)."""
    return wheelhouse.resolve(SERVER_REQUIREMENTS, python_version, platform, progress)


@contextmanager
def staging_dir() -> Iterator[Path]:
    """Where the kernel writes the capture; removed once the build folder has what it needs."""
    with tempfile.TemporaryDirectory(prefix="nb2container-capture-") as folder:
        yield Path(folder)


def notebook_capturer(options: Options, progress: Progress) -> Capturer:
    """Run the notebook file in a fresh kernel (nbclient) and capture there."""
    path = options.notebook
    if path is None:
        raise UsageError("No notebook was given. Pass the path of an .ipynb file.")
    stored = notebook.read_notebook(path)  # checked in a second, not after a run
    function = notebook.choose_function(stored, options.function, path)
    kernel = notebook.choose_kernel(stored, options.kernel, path, progress)
    options.capture_request(function, Path())  # a bad --example is refused now, not after the run

    def capture(staging: Path) -> Capture:
        return notebook.capture_notebook(path, options.capture_request(function, staging), kernel,
                                         options.timeout, progress, options.debug)

    return capture


def capture_function(capturer: Capturer, options: Options, progress: Progress, staging: Path) -> Capture:
    """Capture, refuse a secret that would ship, and say what was captured."""
    capture = capturer(staging)
    cells = notebook.read_notebook(capture.notebook) if capture.notebook else None
    capture = secret_scan.apply(capture, options.secrets, options.not_secrets,
                                notebook.cells_assigning(cells) if cells else {})
    for name in capture.spec.secrets:
        progress.detail(f"secret: `{name}` is read from the environment variable {name} when the image starts")
    for artifact in capture.spec.artifacts:
        progress.detail(f"artifact `{artifact.name}`: {artifact.type}, {artifact.format}, "
                        f"{artifact.size_bytes / 1e3:,.0f} kB")
    for data_file in capture.spec.files:
        progress.detail(f"data file {data_file.path} -> {data_file.image_path} "
                        f"({data_file.size_bytes / 1e3:,.1f} kB, {data_file.found})")
    for parameter, holder in capture.spec.bound.items():
        progress.detail(f"bound: `{parameter}` is the notebook's `{holder}`, supplied by the server")
    if capture.spec.prints:
        progress.detail("the function prints its answer: responses carry what it prints (`stdout`)")
    for warning in capture.warnings:
        progress.warn(warning)
    return capture


def render_folder(options: Options, progress: Progress, capturer: Capturer | None = None) -> Rendered:
    """capture -> freeze -> render: the build folder, without touching Docker."""
    _check_output_early(options)
    with staging_dir() as staging:
        capture = capture_function(capturer or notebook_capturer(options, progress), options, progress, staging)
        outdated = stale.cases(capture, options)
        if outdated:
            progress.warn(stale.message(outdated, capture, building=False))
        return _freeze_and_render(capture, options, progress, None, outdated)


def frozen_environment(options: Options, progress: Progress,
                       capturer: Capturer | None = None) -> tuple[Capture, FrozenEnvironment]:
    """capture -> freeze only (``nb2container freeze``): what the image would hold."""
    capturer = capturer or notebook_capturer(options, progress)
    with staging_dir() as staging:
        capture = capture_function(capturer, options, progress, staging)
    return capture, _freeze(capture, options, progress, None)


def _check_output_early(options: Options) -> None:
    """The build folder, checked before the notebook runs (when it is known before the capture)."""
    folder = options.output or (Path("build") / options.function if options.function else None)
    if folder is not None:
        output.check(folder, options.notebook)


def _freeze(capture: Capture, options: Options, progress: Progress,
            engine: ContainerEngine | None) -> FrozenEnvironment:
    """The environment to rebuild; an earlier build's freeze when nothing it depends on changed."""
    python_version = capture.interpreter.python_version
    progress.step(f"Freezing the kernel's environment (Python {python_version}, the packages the function needs)")
    key = reuse.freeze_key(capture, options, _base_id(options, python_version, engine))
    frozen = reuse.reused_freeze(key)
    if frozen is not None:
        progress.reused("the freeze of an earlier build: this kernel's packages, the function's imports "
                        "and the base are unchanged")
    else:
        frozen = _freeze_anew(capture, options, progress, engine)
        reuse.keep_freeze(key, frozen)
    if frozen.unmapped_modules:
        progress.warn("modules that no installed distribution provides (not locked): "
                      + ", ".join(frozen.unmapped_modules))
    if frozen.left_out:
        progress.detail(f"left out of the image: {lean.describe(frozen.left_out)}")
    progress.detail(f"CUDA: {cuda.describe(frozen.cuda)}")
    if frozen.cuda and not options.gpus:
        progress.warn(f"the image needs CUDA {frozen.cuda.version}, and the smoke test runs without a GPU "
                      "unless you pass --gpus all (or a count)")
    return frozen


def _freeze_anew(capture: Capture, options: Options, progress: Progress,
                 engine: ContainerEngine | None) -> FrozenEnvironment:
    closure = freeze.closure(capture.interpreter, capture.modules)
    python_version = capture.interpreter.python_version
    facts = cuda.probe(capture.interpreter.executable)
    packages, gpu_left_out, facts = _cpu_only(capture, closure, facts, options, progress)
    pins = wheelhouse.fetch(packages, python_version, options.platform, progress, closure.direct_urls)
    suites = lean.suites_left_out(tuple(pins), cache.wheels())
    base_facts = _base_facts(options, python_version, pins, progress, engine)
    system = _system_packages(pins, options.system_packages, base_facts, progress)
    if options.base_image and base_facts is not None:
        base.check_debian(base_facts, bool(system.packages))
    return FrozenEnvironment(python_version, tuple(pins), closure.roots, closure.unmapped_modules,
                             tuple(system.packages), tuple(system.unplaced), cuda.decide(facts, packages),
                             (*gpu_left_out, *suites), base_image=options.base_image,
                             base_digest=base_facts.digest if base_facts else None)


def _base_id(options: Options, python_version: str, engine: ContainerEngine | None) -> str | None:
    """The base image's id in the engine, which a reused freeze must have been made against."""
    if engine is None:
        return None
    try:
        return engine.inspect_image(options.base_image or default_base(python_version)).id
    except (BuildError, UsageError):  # no such base: the freeze says so in its own words
        return None


def _cpu_only(capture: Capture, closure: freeze.Closure, facts: cuda.CudaFacts, options: Options,
              progress: Progress) -> tuple[dict[str, str], tuple[LeftOut, ...], cuda.CudaFacts]:
    """The closure for the image: without the GPU runtime a CPU image cannot use (lean.py), unless
    the kernel used a GPU or --gpus asks for one; and the CUDA facts that then still hold."""
    used = capture.interpreter.gpu_used
    if used or options.gpus or not any(lean.GPU_ONLY.match(n) or n in facts.frameworks for n in closure.packages):
        if used:
            progress.detail(f"the kernel used a GPU through {', '.join(used)}: its CUDA runtime stays in the image")
        return closure.packages, (), facts
    python_version = capture.interpreter.python_version
    plan = lean.plan_gpu(closure.packages, closure.requires, set(facts.frameworks),
                         lean.installed_sizes(capture.interpreter.executable),
                         lambda name, version: wheelhouse.obtainable(name, version, python_version, options.platform))
    for name in plan.swapped:
        distribution, version = lean.CPU_BUILDS[name](closure.packages[name])
        progress.detail(f"{name}: the kernel has {name} {closure.packages[name]}, built with CUDA, and used no GPU; "
                        f"the image gets the CPU build, {distribution} {version}")
    if plan.warning:
        progress.warn(plan.warning)
    # Frameworks that now run on the CPU need no CUDA of the system's either.
    on_cpu = set(plan.swapped) | set(lean.CPU_FALLBACK)
    facts = replace(facts, frameworks={n: v for n, v in facts.frameworks.items() if n not in on_cpu})
    return plan.packages, plan.left_out, facts


def _base_facts(options: Options, python_version: str, pins: list[Pin], progress: Progress,
                engine: ContainerEngine | None) -> base.BaseFacts | None:
    """The base inspected (a custom one refused here if it cannot work), or None without an engine."""
    reference = options.base_image or default_base(python_version)
    engine = engine or connect_if_any(options.engine)
    if engine is None:  # `render` without an engine
        if options.base_image:
            progress.warn(f"the base image {reference} was not inspected (no engine answers): its Python, C "
                          "library and distribution are checked when an engine builds it")
        return None
    if options.base_image:
        progress.step(f"Inspecting the base image {reference}")
        facts = base.inspect(engine, reference)
        base.check(facts, python_version, pins)
        progress.detail(f"base {reference}: Python {facts.python}, {facts.libc[0]} {facts.libc[1]}, "
                        f"{facts.os_id} {facts.codename}".rstrip())
        return facts
    try:
        return base.inspect(engine, reference)
    except (BuildError, UsageError) as exc:
        progress.warn(f"the base image {reference} could not be inspected ({str(exc).split('. ')[0]}), so the "
                      "Debian packages for the wheels' shared libraries are chosen as if it held only what "
                      "every glibc image has: the image may get packages the base already has.")
        return None


def _system_packages(pins: list[Pin], requested: tuple[str, ...], facts: base.BaseFacts | None,
                     progress: Progress) -> SystemNeeds:
    """Debian packages: those asked for (system_packages), and those for the shared libraries the
    wheels need and the base image lacks."""
    needs = system_libs.wheel_needs([cache.wheels() / pin.wheel for pin in pins])
    if not needs and not requested:
        return SystemNeeds()
    result = system_libs.resolve(needs, facts.sonames if facts else None, facts.packages if facts else None,
                                 cache.debs(), progress, requested)
    for package in result.packages:
        why = ", ".join(package.needed_by) or "a dependency of the others"
        progress.detail(f"system package {package.name} {package.version}: for {why}")
    for soname, users in result.unplaced.items():
        progress.warn(f"{', '.join(users[:2])} needs the shared library {soname}, which the base image lacks "
                      "and no known Debian package provides: the image may fail to import it. Add the "
                      "package that ships it to the image, or tell us which one it is.")
    return result


def _freeze_and_render(capture: Capture, options: Options, progress: Progress, engine: ContainerEngine | None,
                       stale: list[SmokeCase]) -> Rendered:
    frozen = _freeze(capture, options, progress, engine)
    pins = frozen.pins
    function = capture.spec.function
    tag = options.tag or render.default_tag(capture.notebook, function)
    folder = options.output or Path("build") / function
    progress.step(f"Rendering the build folder {folder} (Python {frozen.python_version}, "
                  f"{len(pins)} packages, {len(capture.spec.artifacts)} artifact(s))")
    server_pins = server_runtime(frozen.python_version, options.platform, progress)

    public = secret_scan.published(capture)
    if public.parameters:
        left = sum(1 for e in public.capture.examples if e.replayable and not e.golden)
        progress.warn(f"{', '.join(f'`{p}`' for p in public.parameters)} looks secret: its recorded values are "
                      f"redacted in the OpenAPI example, README and report, and {left} call(s) passing them are "
                      "left out of the golden tests; the smoke test still sends them")
    values = {**{f"--secret {name}": value for name, value in capture.secret_values.items()},
              **{f"a secret-like argument ({', '.join(public.parameters)})": value for value in public.hidden
                 if value not in capture.secret_values.values()}}

    def fill(staging: Path) -> None:
        render.render(public.capture, frozen, server_pins, staging, tag, options, stale)
        deploy.write(staging, public.capture, frozen, tag, options.port, labels=options.labels)
        secret_scan.check_folder(staging, values, function)  # before it replaces anything

    written = output.replace(folder, capture.notebook, fill)
    if written.kept:
        progress.detail(f"kept {len(written.kept)} file(s) in {folder} that nb2container did not write: "
                        + ", ".join(written.kept[:10]) + (" ..." if len(written.kept) > 10 else ""))
    return Rendered(capture, frozen, folder, tag, public)


def run(options: Options, progress: Progress, capturer: Capturer | None = None) -> BuildReport:
    """Render, build, and smoke-test; the report's verdict decides the tag, the push and deploy/."""
    progress = kept = WarningsKept(progress)
    capturer = capturer or notebook_capturer(options, progress)
    engine = None if options.no_build else connect(options.engine)  # before the notebook runs: in seconds
    if engine is not None and options.base_image:
        engine.inspect_image(options.base_image)  # a base the engine lacks, named now
    _check_output_early(options)
    with staging_dir() as staging:
        capture = capture_function(capturer, options, progress, staging)
        report = _report(capture, options)
        if report.stale and not options.allow_stale:  # decided before the slow work
            progress.warn(stale.message(report.stale, capture, building=True))
            return _written(report, options, kept)
        rendered = _freeze_and_render(capture, options, progress, engine, report.stale)
    report.packages, report.folder = rendered.frozen.packages, str(rendered.folder)
    report.redacted, report.hidden = list(rendered.public.parameters), rendered.public.hidden
    report.system_packages = {p.name: p.version for p in rendered.frozen.system_packages}
    report.cuda = asdict(rendered.frozen.cuda) if rendered.frozen.cuda else None
    report.left_out = [asdict(item) for item in rendered.frozen.left_out]
    if engine is None:
        return _written(report, options, kept)
    report.engine = engine.name
    progress.step(f"Building the image from {rendered.folder} with {engine.name}")
    image = engine.build(rendered.folder, progress, options.platform)
    report.image_id, report.size_bytes = image.id, image.size_bytes
    if image.cached:
        progress.reused(f"{image.cached} of {image.steps} build steps from the engine's cache")
    progress.step("Checking the image's Python and packages against the lock")
    # Before the smoke test, not beside it: one engine connection at a time (an ssh:// engine's
    # session refuses a second channel while the first is busy).
    report.drift = drift.check_or_reuse(engine, image, rendered.frozen, options.templates is None, progress)
    if not report.drift:
        _prove(engine, image, rendered.capture, options, progress, report)
    if report.verdict.ok:
        engine.tag(image.id, rendered.tag)
        report.image = rendered.tag
        progress.step(f"Tagged {rendered.tag} ({image.size_bytes / 1e6:.0f} MB)")
        if options.push:
            repository = options.push.rsplit("@", 1)[0]
            version = split_tag(rendered.tag)[1]
            digest = engine.push(image.id, repository, version, progress)
            report.pushed = f"{repository}@{digest}"
            progress.step(f"Pushed {report.pushed}")
    elif options.push:
        progress.warn(f"not pushed to {options.push}: the image did not pass")
    usage = report.smoke.usage if report.smoke else None
    if usage or report.pushed or not report.verdict.ok:  # sized by the smoke run, by digest, or marked
        deploy.write(rendered.folder, rendered.capture, rendered.frozen, report.pushed or rendered.tag,
                     options.port, usage, report.verdict, options.labels)
    return _written(report, options, kept)


def _prove(engine: ContainerEngine, image: BuiltImage, capture: Capture, options: Options, progress: Progress,
           report: BuildReport) -> None:
    """The smoke test and --verify-notebook, into the report."""
    if options.no_smoke:
        progress.warn("the smoke test was skipped (--no-smoke): nothing checked that the image "
                      "reproduces the notebook")
    else:
        report.smoke = smoke(engine, image, capture, options, progress)
        report.stale = [case for case in report.smoke.cases if case.stale]  # the same cases, replayed
    report.verify = _verify(engine, image, capture, options, progress)


def test_image(options: Options, image_reference: str, progress: Progress,
               capturer: Capturer | None = None) -> BuildReport:
    """Smoke an existing image against the notebook's calls (``nb2container test``)."""
    progress = kept = WarningsKept(progress)
    capturer = capturer or notebook_capturer(options, progress)
    engine = connect(options.engine)
    image = engine.inspect(image_reference)  # before the notebook runs
    with staging_dir() as staging:
        capture = capture_function(capturer, options, progress, staging)
    report = _report(capture, options)
    public = secret_scan.published(capture)
    report.redacted, report.hidden = list(public.parameters), public.hidden
    if report.stale and not options.allow_stale:
        progress.warn(stale.message(report.stale, capture, building=False))
    report.image, report.image_id, report.size_bytes = image_reference, image.id, image.size_bytes
    report.engine = engine.name
    _prove(engine, image, capture, options, progress, report)
    return _written(report, options, kept)


def smoke(engine: ContainerEngine, image: BuiltImage, capture: Capture, options: Options,
          progress: Progress) -> SmokeReport:
    replayed = sum(example.source == "cell" for example in capture.examples)
    if not capture.examples:
        progress.warn(f"no call of `{capture.spec.function}` was recorded, so only the health "
                      "check runs; call it in a cell (or pass --example) to have the image checked")
    elif capture.calls_total > replayed:
        progress.warn(f"{capture.calls_total} calls were made; the first {replayed} are replayed")
    return smoke_test(engine, image.id, capture.examples, capture.spec.function, options.port,
                      options.rel_tol, options.abs_tol, progress, gpus=options.gpus,
                      environment=capture.secret_values)


def _verify(engine: ContainerEngine, image: BuiltImage, capture: Capture, options: Options,
            progress: Progress) -> VerifyReport | None:
    if not options.verify_notebook:
        return None
    if capture.notebook is None:
        raise UsageError("--verify-notebook re-runs the notebook file, and this notebook was never saved "
                         "(or its front end does not say where it is). Save it and build with "
                         "`nb2container build NOTEBOOK --verify-notebook`.")
    python_version = capture.interpreter.python_version
    closure = freeze.importing_closure(capture.interpreter,
                                       notebook.cell_imports(notebook.read_notebook(capture.notebook)))
    if closure.packages:
        progress.detail("the notebook's cells also import: " + ", ".join(
            f"{name} {version}" for name, version in closure.packages.items()))
    pins = wheelhouse.fetch(closure.packages, python_version, options.platform, progress, closure.direct_urls)
    return verify_notebook(engine, image.id, capture.notebook, python_version, options.platform, progress,
                           options.timeout, options.base_image, tuple(pins))


def write_refusal(options: Options, message: str) -> None:
    """A refused build still writes --report and --junit, holding the refusal, for CI to read."""
    if not (options.report or options.junit):
        return
    notebook = str(options.notebook) if options.notebook else "unsaved notebook"
    report = BuildReport(notebook=notebook, function=options.function or "", image=None, image_id=None,
                         size_bytes=None, python="", packages={}, folder=None, smoke=None, refusal=message)
    with contextlib.suppress(OSError):  # a report path that cannot be written: the refusal is printed anyway
        _written(report, options, WarningsKept(SilentProgress()))


def _written(report: BuildReport, options: Options, kept: WarningsKept) -> BuildReport:
    """Write the JSON report and the JUnit XML where asked, with every warning the build printed."""
    report.warnings = list(dict.fromkeys([*report.warnings, *kept.warnings]))
    if options.report:
        report.write(options.report)
    if options.junit:
        report.write_junit(options.junit)
    return report


def _report(capture: Capture, options: Options) -> BuildReport:
    return BuildReport(
        notebook=str(capture.notebook) if capture.notebook else capture.notebook_name,
        function=capture.spec.function, image=None, image_id=None, size_bytes=None,
        python=capture.interpreter.python_version, packages={}, folder=None, smoke=None,
        artifacts=[asdict(a) for a in capture.spec.artifacts],
        files=[asdict(f) for f in capture.spec.files], warnings=list(capture.warnings),
        interface={"codecs": capture.spec.codecs, "bound": capture.spec.bound, "prints": capture.spec.prints},
        stale=stale.cases(capture, options), allow_stale=options.allow_stale,
    )
