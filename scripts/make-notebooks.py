"""Regenerates the example notebooks in notebooks/ and executes them, storing outputs.

Run with the dev venv: .venv/bin/python scripts/make-notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"

HOUSE_PRICES = [
    new_markdown_cell("# House prices\n\nA small random forest that prices a house from its "
                      "area and number of bedrooms. `predict_price` is what we serve."),
    new_code_cell("import pandas as pd\nfrom sklearn.ensemble import RandomForestRegressor"),
    new_code_cell(
        "df = pd.DataFrame({\n"
        "    'AreaSqft': [850, 900, 1200, 1500, 1800, 2000, 2300, 2600, 3000, 3500],\n"
        "    'NumBedrooms': [1, 2, 2, 3, 3, 3, 4, 4, 5, 5],\n"
        "    'Price': [150000, 165000, 210000, 260000, 300000, 330000, 380000, 420000, 480000, 550000],\n"
        "})\n"
        "df.head()"
    ),
    new_code_cell(
        "X = df[['AreaSqft', 'NumBedrooms']]\n"
        "y = df['Price']\n"
        "model = RandomForestRegressor(n_estimators=10, random_state=42)\n"
        "model.fit(X, y)"
    ),
    new_code_cell(
        "def predict_price(area_sqft, num_bedrooms):\n"
        "    X = pd.DataFrame({'AreaSqft': [area_sqft], 'NumBedrooms': [num_bedrooms]})\n"
        "    return float(model.predict(X)[0])",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("predict_price(1500, 3)"),
    new_code_cell("predict_price(area_sqft=2400, num_bedrooms=4)"),
    new_code_cell("predict_price(900, num_bedrooms=2)"),
]


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, HERE / name)
    print(f"wrote {HERE / name}")


if __name__ == "__main__":
    write("house_prices.ipynb", HOUSE_PRICES)
