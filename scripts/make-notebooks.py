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


CHURN_HELPERS = [
    new_markdown_cell("# Churn risk\n\nHelpers, a dataclass, an encoder class with a base class, "
                      "aliased imports and constants: `churn_risk` reaches for all of them."),
    new_code_cell("import numpy as np\nfrom dataclasses import dataclass\n"
                  "from sklearn.linear_model import LogisticRegression as LR"),
    new_code_cell("PLAN_CODES = {'basic': 0, 'plus': 1, 'pro': 2}\nTHRESHOLD = 0.5"),
    new_code_cell(
        "@dataclass\n"
        "class Customer:\n"
        "    tenure_months: int\n"
        "    monthly_fee: float\n"
        "    plan: str = 'basic'\n"
        "\n"
        "\n"
        "class BaseEncoder:\n"
        "    def encode_plan(self, plan):\n"
        "        return PLAN_CODES[plan]\n"
        "\n"
        "\n"
        "class CustomerEncoder(BaseEncoder):\n"
        "    def __init__(self, fee_scale):\n"
        "        self.fee_scale = fee_scale\n"
        "\n"
        "    def encode(self, customer):\n"
        "        return [customer.tenure_months, customer.monthly_fee / self.fee_scale,\n"
        "                self.encode_plan(customer.plan)]"
    ),
    new_code_cell("def to_matrix(customers, encoder):\n"
                  "    return np.array([encoder.encode(c) for c in customers], dtype=float)"),
    new_code_cell(
        "rng = np.random.default_rng(0)\n"
        "train = [Customer(int(t), float(f), str(p)) for t, f, p in zip(\n"
        "    rng.integers(1, 60, 200), rng.uniform(20, 120, 200), rng.choice(list(PLAN_CODES), 200))]\n"
        "labels = np.array([int(c.tenure_months < 12 and c.monthly_fee > 60) for c in train])\n"
        "encoder = CustomerEncoder(fee_scale=100.0)\n"
        "model = LR(max_iter=1000).fit(to_matrix(train, encoder), labels)\n"
        "int(labels.sum())"
    ),
    new_code_cell(
        "def churn_risk(tenure_months, monthly_fee, plan='basic', threshold=THRESHOLD):\n"
        "    customer = Customer(tenure_months, monthly_fee, plan)\n"
        "    p = float(model.predict_proba(to_matrix([customer], encoder))[0, 1])\n"
        "    return {'churn_probability': round(p, 4), 'at_risk': p >= threshold,\n"
        "            'plan_code': encoder.encode_plan(plan)}",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("churn_risk(3, 99.0)"),
    new_code_cell("churn_risk(48, 30.0, 'pro')"),
    new_code_cell("churn_risk(tenure_months=6, monthly_fee=80.0, plan='plus', threshold=0.3)"),
]

SENTIMENT_FILES = [
    new_markdown_cell("# Sentiment from files\n\n`classify` loads its model from disk and reads a "
                      "stop-word list every time it is called; both files must travel."),
    new_code_cell("import joblib\nfrom pathlib import Path\n"
                  "from sklearn.feature_extraction.text import TfidfVectorizer\n"
                  "from sklearn.linear_model import LogisticRegression\n"
                  "from sklearn.pipeline import make_pipeline"),
    new_code_cell(
        "texts = ['great product, works well', 'terrible, broke after a day', 'love it',\n"
        "         'awful quality', 'excellent value', 'do not buy, waste of money',\n"
        "         'very happy with it', 'disappointing and cheap']\n"
        "labels = [1, 0, 1, 0, 1, 0, 1, 0]\n"
        "pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)\n"
        "Path('models').mkdir(exist_ok=True)\n"
        "joblib.dump(pipeline, 'models/sentiment.joblib')"
    ),
    new_code_cell(
        "MODEL_PATH = 'models/sentiment.joblib'\n"
        "\n"
        "\n"
        "def load_stopwords(path='data/stopwords.txt'):\n"
        "    with open(path) as handle:\n"
        "        return {line.strip() for line in handle if line.strip()}\n"
        "\n"
        "\n"
        "def classify(text):\n"
        "    stopwords = load_stopwords()\n"
        "    model = joblib.load(MODEL_PATH)\n"
        "    kept = ' '.join(w for w in text.lower().split() if w not in stopwords)\n"
        "    p = float(model.predict_proba([kept])[0, 1])\n"
        "    return {'label': 'positive' if p >= 0.5 else 'negative', 'score': round(p, 4),\n"
        "            'words': len(kept.split())}",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("classify('I love this, great value')"),
    new_code_cell("classify('the worst, a waste of money')"),
]

IPYTHON_MAGICS = [
    new_markdown_cell("# IPython syntax\n\nLine and cell magics, shell escapes and help lines "
                      "around the code; none of it may reach the image."),
    new_code_cell("%load_ext autoreload\n%autoreload 2\nimport numpy as np"),
    new_code_cell("!echo shell lines are fine in a notebook"),
    new_code_cell("lines = !printf 'alpha\\nbeta\\ngamma\\n'\nWORDS = list(lines)\nWORDS"),
    new_code_cell("np.mean?"),
    new_code_cell("%%capture\ndef weight(word):\n    return len(word) / 10\n\n"
                  "print('hidden by %%capture')"),
    new_code_cell("%time total = float(sum(weight(w) for w in WORDS))",
                  metadata={"tags": ["nbval-ignore-output"]}),
    new_code_cell("%%time\ndef normalise(values):\n    return [v / total for v in values]",
                  metadata={"tags": ["nbval-ignore-output"]}),
    new_code_cell("def score(word_list):\n"
                  "    return round(sum(normalise([weight(w) for w in word_list if w in WORDS])), 6)",
                  metadata={"tags": ["serve"]}),
    new_code_cell("score(['alpha', 'beta'])"),
    new_code_cell("score(['gamma', 'delta'])"),
]

ASYNC_SIGNATURES = [
    new_markdown_cell("# An async function with every kind of argument\n\n"
                      "Positional, default, keyword-only arguments; awaited in the notebook."),
    new_code_cell("import asyncio\nimport statistics as stats"),
    new_code_cell(
        "WEIGHTS = (0.2, 0.3, 0.5)\n"
        "\n"
        "\n"
        "async def fetch_features(values):\n"
        "    await asyncio.sleep(0)  # stands in for an I/O call\n"
        "    return [v * w for v, w in zip(values, WEIGHTS)]\n"
        "\n"
        "\n"
        "async def predict(values, bias=0.0, *, scale=1.0, method='mean'):\n"
        "    features = await fetch_features(values)\n"
        "    centre = stats.mean(features) if method == 'mean' else stats.median(features)\n"
        "    return round((centre + bias) * scale, 6)"
    ),
    new_code_cell("await predict([1.0, 2.0, 3.0])"),
    new_code_cell("await predict([4, 5, 6], 0.5)"),
    new_code_cell("await predict([1, 1, 1], scale=2.0, method='median')"),
]

LOOKUP_CLOSURES = [
    new_markdown_cell("# Lambdas, closures and a default that is an array\n\n"
                      "`assign` uses a dict of lambdas, a closure made by a factory, and a "
                      "helper whose default argument is a numpy array."),
    new_code_cell("import math\nimport numpy as np"),
    new_code_cell("TRANSFORMS = {'log': lambda v: math.log1p(v), 'sqrt': lambda v: math.sqrt(v),\n"
                  "              'identity': lambda v: v}"),
    new_code_cell("def make_scaler(mean, std):\n"
                  "    def scale(v):\n"
                  "        return (v - mean) / std\n"
                  "    return scale\n"
                  "\n"
                  "\n"
                  "scaler = make_scaler(1.0, 0.5)"),
    new_code_cell("centroids = np.array([[0.0, 0.0], [1.0, 1.5], [15.0, 1.0], [-2.0, 3.0]])\n"
                  "centroids"),
    new_code_cell(
        "def nearest(point, table=centroids):\n"
        "    distances = ((table - np.asarray(point)) ** 2).sum(axis=1)\n"
        "    return int(distances.argmin())\n"
        "\n"
        "\n"
        "def featurise(raw, transform='log'):\n"
        "    f = TRANSFORMS[transform]\n"
        "    return [scaler(f(v)) for v in raw]\n"
        "\n"
        "\n"
        "def assign(raw, transform='log'):\n"
        "    x = featurise(raw, transform)\n"
        "    return {'cluster': nearest(x), 'features': [round(v, 6) for v in x]}",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("assign([3.0, 5.0])"),
    new_code_cell("assign([100.0, 2.0], transform='sqrt')"),
    new_code_cell("assign([1.0, 1.5], 'identity')"),
]

PANDAS_SEGMENTS = [
    new_markdown_cell("# Segments from a pandas table\n\nA DataFrame summary, a cached helper "
                      "(a decorator), `pd.cut` with constant bins."),
    new_code_cell("import functools\nimport pandas as pd"),
    new_code_cell(
        "sales = pd.DataFrame({\n"
        "    'region': ['north', 'north', 'south', 'south', 'east', 'east', 'west', 'west'],\n"
        "    'segment': ['retail', 'b2b'] * 4,\n"
        "    'revenue': [120.0, 340.0, 95.0, 410.0, 150.0, 280.0, 60.0, 500.0],\n"
        "})\n"
        "summary = sales.groupby(['region', 'segment'])['revenue'].mean().unstack()\n"
        "summary"
    ),
    new_code_cell(
        "BINS = [0, 100, 250, 1000]\n"
        "LABELS = ['small', 'medium', 'large']\n"
        "\n"
        "\n"
        "@functools.lru_cache(maxsize=128)\n"
        "def region_baseline(region):\n"
        "    return float(summary.loc[region].mean())\n"
        "\n"
        "\n"
        "def segment_order(region, segment, amount):\n"
        "    size = pd.cut([amount], bins=BINS, labels=LABELS)[0]\n"
        "    return {'size': str(size), 'vs_baseline': round(amount / region_baseline(region), 4),\n"
        "            'segment_mean': float(summary.loc[region, segment])}",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("segment_order('north', 'b2b', 300.0)"),
    new_code_cell("segment_order('west', 'retail', 50.0)"),
]

# Saved after running cell 7 before cell 6: the kind of notebook people really hand over.
HIDDEN_STATE = [
    new_markdown_cell("# Hidden state\n\nA helper loaded with `%run`, settings poured into "
                      "`globals()`, and cells that were run out of order before saving."),
    new_code_cell("import json"),
    new_code_cell("%run helpers/text_tools.py"),
    new_code_cell("config = json.loads('{\"MIN_LENGTH\": 3, \"BONUS_WORDS\": [\"great\", \"fast\"]}')\n"
                  "globals().update(config)"),
    new_code_cell("def keyword_score(text):\n"
                  "    kept = [t for t in tokens(text) if len(t) >= MIN_LENGTH]\n"
                  "    return len(kept) + sum(2 for t in kept if t in BONUS_WORDS)",
                  metadata={"tags": ["serve"]}),
    new_code_cell("keyword_score('Great service and fast delivery')"),
    new_code_cell("keyword_score('ok, it is fine')"),
]

# Ends with the magic: the data scientist never leaves the kernel.
CONTAINERIZE_MAGIC = [
    new_markdown_cell("# Diabetes progression, containerized from the notebook\n\n"
                      "`%containerize` captures `predict_progression` from this kernel's memory, "
                      "builds the image and replays the calls made below against it."),
    new_code_cell("%load_ext nb2container"),
    new_code_cell("from sklearn.datasets import load_diabetes\nfrom sklearn.linear_model import Ridge\n\n"
                  "X, y = load_diabetes(return_X_y=True)\nmodel = Ridge(alpha=0.5).fit(X, y)\n"
                  "round(model.score(X, y), 4)"),
    new_code_cell(
        "def predict_progression(age, sex, bmi, bp, s1=0.0, s2=0.0, s3=0.0, s4=0.0, s5=0.0, s6=0.0):\n"
        "    row = [[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]]\n"
        "    return round(float(model.predict(row)[0]), 3)",
        metadata={"tags": ["serve"]},
    ),
    new_code_cell("predict_progression(0.03, 0.05, 0.06, 0.02)"),
    new_code_cell("predict_progression(age=-0.01, sex=-0.04, bmi=-0.03, bp=-0.02, s5=-0.01)"),
    new_code_cell("build = %containerize predict_progression --tag nb2c-demo/diabetes:latest --output build/diabetes",
                  metadata={"tags": ["nbval-ignore-output"]}),
    new_markdown_cell("The build runs outside the kernel: the cell above follows it, and other cells run "
                      "meanwhile. `build.wait()` returns the result (`.image`, `.ok`, `.report`); "
                      "`build.cancel()` stops it. `nb2container runs` lists every build."),
    new_code_cell("build.wait()", metadata={"tags": ["nbval-ignore-output"]}),
]

# Issue 9: functions as notebooks really write them.
BOUND_MODEL = [
    new_markdown_cell("# A model passed as an argument\n\n`predict_single(customer, dv, model)`: the "
                      "vectorizer and the model are the same objects in every call, so the server "
                      "supplies them and a request carries only `customer`."),
    new_code_cell("from sklearn.feature_extraction import DictVectorizer\n"
                  "from sklearn.linear_model import LogisticRegression"),
    new_code_cell(
        "customers = [\n"
        "    {'contract': 'monthly', 'tenure': 2, 'charges': 85.0},\n"
        "    {'contract': 'yearly', 'tenure': 40, 'charges': 60.0},\n"
        "    {'contract': 'monthly', 'tenure': 5, 'charges': 95.0},\n"
        "    {'contract': 'two_year', 'tenure': 60, 'charges': 45.0},\n"
        "    {'contract': 'monthly', 'tenure': 12, 'charges': 70.0},\n"
        "    {'contract': 'yearly', 'tenure': 24, 'charges': 55.0},\n"
        "]\n"
        "churned = [1, 0, 1, 0, 1, 0]\n"
        "dv = DictVectorizer(sparse=False)\n"
        "model = LogisticRegression(C=0.01, max_iter=1000).fit(dv.fit_transform(customers), churned)"
    ),
    new_code_cell("def predict_single(customer, dv, model):\n"
                  "    X = dv.transform([customer])\n"
                  "    return round(float(model.predict_proba(X)[0, 1]), 4)",
                  metadata={"tags": ["serve"]}),
    new_code_cell("predict_single({'contract': 'monthly', 'tenure': 3, 'charges': 90.0}, dv, model)"),
    new_code_cell("predict_single({'contract': 'two_year', 'tenure': 50, 'charges': 50.0}, dv, model)"),
]

NUMPY_ARRAYS = [
    new_markdown_cell("# Arrays in, arrays out\n\n`standardise` takes a 2-D float array and "
                      "returns one; the request sends nested lists and gets nested lists back."),
    new_code_cell("import numpy as np\n\nrng = np.random.default_rng(3)\n"
                  "train = rng.normal(5.0, 2.0, size=(100, 3))\n"
                  "MEAN, STD = train.mean(axis=0), train.std(axis=0)"),
    new_code_cell("def standardise(x: np.ndarray) -> np.ndarray:\n"
                  "    return np.round((x - MEAN) / STD, 6)", metadata={"tags": ["serve"]}),
    new_code_cell("standardise(np.array([[5.0, 5.0, 5.0], [7.0, 3.0, 1.0]]))"),
    new_code_cell("standardise(np.array([[1.0, 2.0, 3.0]]))"),
]

PANDAS_FRAMES = [
    new_markdown_cell("# A DataFrame in, a Series out\n\n`order_values` takes the orders as a "
                      "DataFrame and a date, and returns a Series."),
    new_code_cell("import datetime\n\nimport pandas as pd\n\nDISCOUNT = 0.1"),
    new_code_cell("def order_values(orders: pd.DataFrame, as_of: datetime.date) -> pd.Series:\n"
                  "    age = (pd.Timestamp(as_of) - orders['ordered']).dt.days\n"
                  "    value = orders['qty'] * orders['price'] * (1 - DISCOUNT)\n"
                  "    return (value * (age <= 30)).round(2).rename('value')",
                  metadata={"tags": ["serve"]}),
    new_code_cell("orders = pd.DataFrame({\n"
                  "    'qty': [2, 1, 5],\n"
                  "    'price': [9.99, 120.0, 3.5],\n"
                  "    'ordered': pd.to_datetime(['2024-05-01', '2024-03-15', '2024-05-20']),\n"
                  "})\n"
                  "order_values(orders, datetime.date(2024, 5, 25))"),
    new_code_cell("order_values(orders.head(1), datetime.date(2024, 7, 1))"),
]

PRINTED_REPORT = [
    new_markdown_cell("# A function that prints its answer\n\n`report` returns nothing; the "
                      "notebook shows what it prints."),
    new_code_cell("def report(values):\n"
                  "    total = sum(values)\n"
                  "    print(f'n = {len(values)}')\n"
                  "    print(f'total = {total:.3f}')\n"
                  "    print(f'mean = {total / len(values):.4f}')", metadata={"tags": ["serve"]}),
    new_code_cell("report([1.5, 2.25, 3.0])"),
    new_code_cell("report([10, 20])"),
]

ZERO_ARGUMENTS = [
    new_markdown_cell("# No arguments\n\n`model_card` takes nothing and describes the model."),
    new_code_cell("VERSION = '2024.05'\nFEATURES = ['age', 'income', 'tenure']"),
    new_code_cell("def model_card():\n"
                  "    return {'version': VERSION, 'features': FEATURES, 'n_features': len(FEATURES)}",
                  metadata={"tags": ["serve"]}),
    new_code_cell("model_card()"),
    new_code_cell("model_card()['n_features']"),
]

# Issue 18: one function's calls disagree on shapes, dtypes and columns; the contract widens.
VARYING_SHAPES = [
    new_markdown_cell("# Shapes that vary\n\n`score` is called with 1-D and 2-D weight arrays, int and "
                      "float dtypes, and frames with different columns, as a course notebook does."),
    new_code_cell("import numpy as np\nimport pandas as pd"),
    new_code_cell("def score(w, rows):\n"
                  "    return float(np.sum(w)) + float(rows.select_dtypes('number').to_numpy().sum())",
                  metadata={"tags": ["serve"]}),
    new_code_cell("score(np.array([1.0, 2.0]), pd.DataFrame({'a': [1, 2]}))"),
    new_code_cell("score(np.array([[1.0], [2.0]]), pd.DataFrame({'a': [1.5], 'b': [2]}))"),
    new_code_cell("score(np.array([3, 4]), pd.DataFrame({'b': [1]}))"),
]

# Issue 18: numpy values beyond float64: extended precision, dates, durations, object arrays.
NUMPY_TYPES = [
    new_markdown_cell("# numpy types JSON has no word for\n\n`summarise` returns extended-precision "
                      "floats, a datetime64, a timedelta64 and an object array; each travels as JSON."),
    new_code_cell("import numpy as np"),
    new_code_cell("def summarise(x, when):\n"
                  "    values = np.array(x, dtype=np.longdouble)\n"
                  "    return {'mean': values.mean(), 'doubled': values * 2,\n"
                  "            'next_day': np.datetime64(when) + np.timedelta64(1, 'D'),\n"
                  "            'window': np.timedelta64(90, 's'),\n"
                  "            'labels': np.array(['low' if v < 2 else 'high' for v in x], dtype=object)}",
                  metadata={"tags": ["serve"]}),
    new_code_cell("summarise([1.0, 2.0, 3.0], '2024-05-01')"),
    new_code_cell("summarise([0.5], '2024-12-31')"),
]

# Issue 18: several calls print into one cell's output; one call's result is not its cell's output.
PRINTED_CALLS = [
    new_markdown_cell("# Calls that print together\n\n`predict` prints the likeliest language of a "
                      "surname; a loop prints three answers into one output."),
    new_code_cell("LANGUAGES = ['Czech', 'Russian', 'English', 'Japanese']"),
    new_code_cell("def predict(name):\n"
                  "    score = (sum(map(ord, name)) % 97) / -100\n"
                  "    language = LANGUAGES[len(name) % len(LANGUAGES)]\n"
                  "    print(f'({score:.2f}) {language}')", metadata={"tags": ["serve"]}),
    new_code_cell("for name in ['Dovesky', 'Jackson', 'Satoshi']:\n    predict(name)"),
    new_code_cell("predict('Hinton')"),
    new_code_cell("answer = predict('Ng')\nprint('done')"),
]

# Issue 4: a compiled package that needs a system library the slim base lacks (libgomp).
LIGHTGBM_MODEL = [
    new_markdown_cell("# Delivery time with LightGBM\n\nLightGBM's compiled core links to "
                      "`libgomp.so.1`, which the slim base image does not have."),
    new_code_cell("import numpy as np\nimport lightgbm as lgb"),
    new_code_cell("rng = np.random.default_rng(11)\n"
                  "X = rng.uniform(0, 10, size=(300, 2))\n"
                  "y = 2.0 * X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(0, 0.5, 300)\n"
                  "model = lgb.LGBMRegressor(n_estimators=40, learning_rate=0.2, num_leaves=8,\n"
                  "                          random_state=0, verbose=-1).fit(X, y)"),
    new_code_cell("def delivery_minutes(distance_km, stops):\n"
                  "    return round(float(model.predict(np.array([[distance_km, stops]]))[0]), 4)",
                  metadata={"tags": ["serve"]}),
    new_code_cell("delivery_minutes(3.5, 2)"),
    new_code_cell("delivery_minutes(8.0, 6)"),
]

# Issue 4: a package installed editable from a local folder (scripts/setup-dev.sh installs it).
LOCAL_PACKAGE = [
    new_markdown_cell("# A team's own package\n\n`pricing_rules` is installed with `pip install -e`: "
                      "no index has it, so nb2container builds its wheel from the folder."),
    new_code_cell("from pricing_rules import with_surcharge"),
    new_code_cell("def quote(amount, region='east'):\n"
                  "    return {'region': region, 'total': with_surcharge(amount, region)}",
                  metadata={"tags": ["serve"]}),
    new_code_cell("quote(100.0, 'north')"),
    new_code_cell("quote(250.0)"),
]

# Issue 6: what the server must survive. Type hints the server checks, a function that raises on
# bad input, calls that run long (a Python loop, and a sleep in C that ignores interruption),
# and an object whose loading takes seconds, as a large model's does.
SERVING_FAULTS = [
    new_markdown_cell("# Serving faults\n\n`score` has type hints, raises on a negative value, can run "
                      "long on purpose (in Python, in a sleep, in a C loop that never yields), and needs `calibration`, which takes two seconds to load."),
    new_code_cell("import time"),
    new_code_cell("class SlowToLoad:\n"
                  "    \"\"\"Stands in for a large model: unpickling it takes `seconds`.\"\"\"\n"
                  "    def __init__(self, factor, seconds):\n"
                  "        self.factor, self.seconds = factor, seconds\n"
                  "    def __setstate__(self, state):\n"
                  "        self.__dict__.update(state)\n"
                  "        time.sleep(self.seconds)\n"
                  "\n"
                  "calibration = SlowToLoad(factor=2.0, seconds=2.0)"),
    new_code_cell("def score(x: float, wait: float = 0.0, busy: bool = False, spin: int = 0) -> float:\n"
                  "    if x < 0:\n"
                  "        raise ValueError(f'x must not be negative, got {x}')\n"
                  "    if spin:  # a loop in C that never looks at signals\n"
                  "        sum(range(spin))\n"
                  "    end = time.monotonic() + wait\n"
                  "    while busy and time.monotonic() < end:\n"
                  "        pass  # a long computation in Python\n"
                  "    if not busy:\n"
                  "        time.sleep(wait)  # a long call in C\n"
                  "    return x * calibration.factor",
                  metadata={"tags": ["serve"]}),
    new_code_cell("score(1.5)"),
    new_code_cell("score(4.0, wait=0.01)"),
]

SPAM_APPLY = [
    new_markdown_cell("# Spam filter\n\nA keyword rule, used the way notebooks often use a function: "
                      "mapped over a column with `.apply`, never called on its own."),
    new_code_cell("import pandas as pd\n\nSPAM_WORDS = {'free', 'win', 'prize', 'cash', 'urgent'}"),
    new_code_cell("def classify(sms):\n"
                  "    words = set(sms.lower().replace('!', ' ').replace(':', ' ').split())\n"
                  "    return 'spam' if words & SPAM_WORDS else 'ham'", metadata={"tags": ["serve"]}),
    new_code_cell("messages = pd.DataFrame({'SMS': [\n"
                  "    'Free entry to win a prize!', 'See you at lunch', 'URGENT: claim your cash',\n"
                  "    'ok', 'Call me later', 'win win win', 'Are we still on for tonight?',\n"
                  "]})\n"
                  "messages['label'] = messages['SMS'].apply(classify)\n"
                  "messages"),
    new_code_cell("messages['label'].value_counts()"),
]


SERIES_OR_LIST = [
    new_markdown_cell("# Totals\n\nOne function, called with a pandas Series in one cell and a plain list "
                      "in another: each reaches the served function as the type it was."),
    new_code_cell("import pandas as pd"),
    new_code_cell("def total(values):\n"
                  "    kind = 'series' if isinstance(values, pd.Series) else type(values).__name__\n"
                  "    return {'kind': kind, 'total': float(sum(values))}", metadata={"tags": ["serve"]}),
    new_code_cell("total(pd.Series([1.0, 2.0, 4.0], name='amount'))"),
    new_code_cell("total([1.0, 2.0])"),
]


TORCH_DIGITS = [
    new_markdown_cell("# Digits with PyTorch\n\nA linear classifier trained on scikit-learn's bundled digits; "
                      "`predict` takes a tensor of pixel rows and returns a tensor of digits."),
    new_code_cell("import torch\nfrom sklearn.datasets import load_digits"),
    new_code_cell("digits = load_digits()\n"
                  "X = torch.tensor(digits.data[:300], dtype=torch.float32) / 16\n"
                  "y = torch.tensor(digits.target[:300])\n"
                  "torch.manual_seed(0)\n"
                  "model = torch.nn.Linear(64, 10)\n"
                  "optimiser = torch.optim.SGD(model.parameters(), lr=0.5)\n"
                  "for _ in range(60):\n"
                  "    optimiser.zero_grad()\n"
                  "    loss = torch.nn.functional.cross_entropy(model(X), y)\n"
                  "    loss.backward()\n"
                  "    optimiser.step()\n"
                  "round(loss.item(), 3)"),
    new_code_cell("def predict(pixels: torch.Tensor) -> torch.Tensor:\n"
                  "    with torch.no_grad():\n"
                  "        return model(pixels).argmax(dim=-1)", metadata={"tags": ["serve"]}),
    new_code_cell("predict(X[:4])"),
    new_code_cell("predict(X[100:102])"),
]


XGBOOST_CROPS = [
    new_markdown_cell("# Crops with XGBoost\n\nA gradient-boosted classifier on scikit-learn's bundled wine data, "
                      "trained on the CPU; `recommend` takes a field's measurements and names the class."),
    new_code_cell("import xgboost as xgb\nfrom sklearn.datasets import load_wine"),
    new_code_cell("wine = load_wine()\n"
                  "model = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1)\n"
                  "model.fit(wine.data, wine.target)\n"
                  "NAMES = list(wine.target_names)\n"
                  "round(float(model.score(wine.data, wine.target)), 3)"),
    new_code_cell("def recommend(measurements: list) -> str:\n"
                  "    return str(NAMES[int(model.predict([measurements])[0])])", metadata={"tags": ["serve"]}),
    new_code_cell("recommend(wine.data[0].tolist())"),
    new_code_cell("recommend(wine.data[100].tolist())"),
    new_code_cell("recommend(wine.data[170].tolist())"),
]


KERAS_SPAM = [
    new_markdown_cell("# Spam with Keras\n\nA small text classifier built with `tensorflow.keras` "
                      "(TensorFlow on the CPU); `spam_probability` pads a message's word ids with Keras' own `pad_sequences`."),
    new_code_cell("import os\n"
                  "os.environ.update(TF_CPP_MIN_LOG_LEVEL='2', TF_ENABLE_ONEDNN_OPTS='0')\n"
                  "import numpy as np\n"
                  "import tensorflow as tf\n"
                  "from tensorflow.keras.preprocessing.sequence import pad_sequences"),
    new_code_cell("MESSAGES = ['win a free prize now', 'free cash click now', 'claim your free prize',\n"
                  "            'urgent win cash now', 'see you at lunch', 'can you call me later',\n"
                  "            'are we still on for dinner', 'thanks for the notes']\n"
                  "LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype='float32')\n"
                  "VOCAB = {word: i + 1 for i, word in enumerate(sorted({w for m in MESSAGES for w in m.split()}))}\n"
                  "MAXLEN = 8\n"
                  "ids = pad_sequences([[VOCAB[w] for w in m.split()] for m in MESSAGES], maxlen=MAXLEN)\n"
                  "tf.keras.utils.set_random_seed(0)\n"
                  "model = tf.keras.Sequential([tf.keras.Input((MAXLEN,)),\n"
                  "                             tf.keras.layers.Embedding(len(VOCAB) + 1, 8),\n"
                  "                             tf.keras.layers.GlobalAveragePooling1D(),\n"
                  "                             tf.keras.layers.Dense(1, activation='sigmoid')])\n"
                  "model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss='binary_crossentropy')\n"
                  "model.fit(ids, LABELS, epochs=12, verbose=0)\n"
                  "len(VOCAB)"),
    new_code_cell("def spam_probability(message: str) -> float:\n"
                  "    words = [[VOCAB.get(w, 0) for w in message.lower().split()]]\n"
                  "    return round(float(model(pad_sequences(words, maxlen=MAXLEN))[0, 0]), 3)",
                  metadata={"tags": ["serve"]}),
    new_code_cell("spam_probability('free prize now')"),
    new_code_cell("spam_probability('see you at dinner')"),
]


NOTEBOOKS = {
    "house_prices.ipynb": (HOUSE_PRICES, None),
    "churn_helpers.ipynb": (CHURN_HELPERS, None),
    "sentiment_files.ipynb": (SENTIMENT_FILES, None),
    "ipython_magics.ipynb": (IPYTHON_MAGICS, None),
    "async_signatures.ipynb": (ASYNC_SIGNATURES, None),
    "lookup_closures.ipynb": (LOOKUP_CLOSURES, None),
    "pandas_segments.ipynb": (PANDAS_SEGMENTS, None),
    "hidden_state.ipynb": (HIDDEN_STATE, [0, 1, 2, 3, 4, 6, 5]),
    "containerize_magic.ipynb": (CONTAINERIZE_MAGIC, None),
    "bound_model.ipynb": (BOUND_MODEL, None),
    "numpy_arrays.ipynb": (NUMPY_ARRAYS, None),
    "pandas_frames.ipynb": (PANDAS_FRAMES, None),
    "printed_report.ipynb": (PRINTED_REPORT, None),
    "zero_arguments.ipynb": (ZERO_ARGUMENTS, None),
    "lightgbm_model.ipynb": (LIGHTGBM_MODEL, None),
    "local_package.ipynb": (LOCAL_PACKAGE, None),
    "serving_faults.ipynb": (SERVING_FAULTS, None),
    "varying_shapes.ipynb": (VARYING_SHAPES, None),
    "numpy_types.ipynb": (NUMPY_TYPES, None),
    "printed_calls.ipynb": (PRINTED_CALLS, None),
    "spam_apply.ipynb": (SPAM_APPLY, None),
    "series_or_list.ipynb": (SERIES_OR_LIST, None),
    "torch_digits.ipynb": (TORCH_DIGITS, None),
    "xgboost_crops.ipynb": (XGBOOST_CROPS, None),
    "keras_spam.ipynb": (KERAS_SPAM, None),
}


def write(name: str, cells: list, order: list[int] | None = None) -> None:
    """Execute the cells (in ``order`` when given, as a person might have) and save."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(HERE)}})
    with client.setup_kernel():
        for index in order or range(len(nb.cells)):
            client.execute_cell(nb.cells[index], index)
    nbformat.write(nb, HERE / name)
    print(f"wrote {HERE / name}")


if __name__ == "__main__":
    import sys

    for name, (cells, order) in NOTEBOOKS.items():
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            write(name, cells, order)
