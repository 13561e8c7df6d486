"""From the live kernel: how soon the kernel is free, a cold build's time to the verdict, and a
rebuild's after editing only the function, side by side in one kernel (issue 27's figures).

    eval "$(scripts/engine.sh)"
    .venv/bin/python bench/rebuild.py [--cold]

One real kernel (nbclient) runs the house-price notebook's cells after ``%load_ext
nb2container``, then ``%containerize predict_price`` (the handle returns; ``.wait()`` gives the
verdict), redefines ``predict_price`` with an edited body that gives the same answers, and
containerizes again. ``--cold`` first removes the images an earlier house-price build left and
the dangling ones and the frozen environments kept for reuse, so the first build freezes and
installs its packages. ``--edit-seconds`` (default 5) is
the time the edit takes before the second ``%containerize``, as a person's would (the kernel's
spare build process imports meanwhile; 0 measures back-to-back builds); it is not in the
timings, which start at ``%containerize``. Each build's steps and their times come from its
run's events (runs.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from nb2container import cache

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "house_prices.ipynb"
TAGS = ("nb2c-bench/rebuild:cold", "nb2c-bench/rebuild:edited")

TIMED = """import time
started = time.monotonic()
build = %containerize predict_price --tag {tag} --output {output}
free = time.monotonic() - started
result = build.wait()
print('{label}', round(free, 2), round(time.monotonic() - started, 1), result.ok)"""

EDITED = """def predict_price(area_sqft, num_bedrooms):
    X = pd.DataFrame({'AreaSqft': [area_sqft], 'NumBedrooms': [num_bedrooms]})
    price = model.predict(X)[0]
    return float(price)"""

STEPS = """from nb2container import runs
for info in runs.listing()[:2][::-1]:
    events = runs.events(runs.find(info.id))
    print(info.id)
    for event in events:
        if event['kind'] in ('step', 'detail', 'reused', 'warning'):
            print('   ', event['time'][11:23], event['text'][:80])"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="remove earlier house-price images first")
    parser.add_argument("--edit-seconds", type=float, default=5, help="the pause for the edit (default 5)")
    args = parser.parse_args()
    if args.cold:
        for tag in TAGS:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=False)
        for frozen in cache.folder("freezes").glob("*.pickle"):  # and no freeze to reuse (reuse.py)
            frozen.unlink()
    stored = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory(prefix="nb2c-rebuild-") as tmp:
        work = Path(tmp)
        cells = [new_code_cell("%load_ext nb2container"),
                 *[new_code_cell(cell.source) for cell in stored.cells if cell.cell_type == "code"],
                 new_code_cell(TIMED.format(tag=TAGS[0], output=work / "cold", label="cold")),
                 new_code_cell(f"import time\ntime.sleep({args.edit_seconds})\n" + EDITED),
                 new_code_cell(TIMED.format(tag=TAGS[1], output=work / "edited", label="edited")),
                 new_code_cell(STEPS)]
        nb = new_notebook(cells=cells)
        NotebookClient(nb, timeout=1800, resources={"metadata": {"path": str(work)}}).execute(
            env={**os.environ, "NB2CONTAINER_RUNS_DIR": str(work / "runs")})
    printed = {}
    for cell in nb.cells[-4:]:
        for output in cell.outputs:
            if output.output_type == "stream":
                for line in output.text.splitlines():
                    label, *rest = line.split() or [""]
                    if label in ("cold", "edited"):
                        printed[label] = rest
                    else:
                        print(line)
    print("\n| build | kernel free after | verdict after | ok |\n|---|---|---|---|")
    for label, (free, verdict, ok) in printed.items():
        print(f"| {label} | {free} s | {verdict} s | {ok} |")
    if len(printed) == 2:
        print(f"\nrebuild / cold: {float(printed['edited'][1]) / float(printed['cold'][1]):.2f} (target <= 0.10)")


if __name__ == "__main__":
    sys.exit(main())
