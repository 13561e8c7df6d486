"""The servers bench/serve.py compares the image's server with, written as their docs teach:
a FastAPI app (run by uvicorn) and a Flask app (run by gunicorn), each calling the very same
generated module, `notebook_function.py`, with the same model.

NB2C_BENCH_APP names the folder that holds notebook_function.py and its artifacts/.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from flask import Flask, request
from pydantic import BaseModel

sys.path.insert(0, os.environ["NB2C_BENCH_APP"])
from notebook_function import predict_price

fastapi_app = FastAPI()


class House(BaseModel):
    area_sqft: float
    num_bedrooms: int


@fastapi_app.post("/predict")
def predict_fastapi(house: House) -> dict[str, float]:
    return {"result": predict_price(house.area_sqft, house.num_bedrooms)}


flask_app = Flask(__name__)


@flask_app.post("/predict")
def predict_flask() -> dict[str, float]:
    body = request.get_json()
    return {"result": predict_price(body["area_sqft"], body["num_bedrooms"])}
