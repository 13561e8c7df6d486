"""The OpenAPI 3 document of the image's endpoints, written into the build folder.

``/predict`` is described from the function's signature and type hints and from every call the
notebook made (``runtime/contract.py``); the server enforces the same schema, read from spec.json.
Its example is the notebook's own first replayable call.
"""

from __future__ import annotations

import json
from typing import Any

import nb2container
from nb2container.model import Capture
from nb2container.runtime import contract
from nb2container.runtime.codecs import json_schema

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "error_id": {"type": "string"}}}
def recorded_values(capture: Capture) -> dict[str, list[Any]]:
    """Parameter -> the JSON values the notebook's replayable calls sent for it."""
    spec = capture.spec
    positional = [p.name for p in spec.parameters if p.name not in spec.bound
                  and p.kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    values: dict[str, list[Any]] = {}
    for example in capture.examples:
        if not example.replayable:
            continue
        body = example.body if isinstance(example.body, dict) else dict(zip(positional, example.body or [],
                                                                               strict=False))
        for name, value in body.items():
            values.setdefault(name, []).append(value)
    return values


def parameter_schema(codec: dict[str, Any], seen: list[Any], annotation: str | None) -> dict[str, Any]:
    """What one argument may be: its codec's form, else its type hint, else every recorded value's type."""
    hint = contract.from_hint(annotation) if codec.get("kind", "json") == "json" else None
    if codec.get("kind", "json") != "json":
        schema = json_schema(codec)
    elif hint:
        schema = contract.with_bounds({"type": hint})
        schema["x-nb2container-codec"] = codec
    else:
        schema = {**(contract.of_values(seen) if seen else {}), "x-nb2container-codec": codec}
    return {**schema, **contract.flags(seen)}


def body_limit(capture: Capture) -> int:
    """The default largest body the image accepts, from the contract and the recorded calls."""
    sizes = [len(json.dumps(e.body)) for e in capture.examples if e.body is not None]
    return contract.body_limit(request_schema(capture), sizes)


def request_schema(capture: Capture) -> dict[str, Any]:
    """The body of ``/predict``, exactly as the server enforces it (spec.json carries the same)."""
    spec = capture.spec
    params = spec.codecs.get("params", {})
    values = recorded_values(capture)
    properties, required = {}, []
    for parameter in spec.parameters:
        if parameter.name in spec.bound or parameter.kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        schema = parameter_schema(params.get(parameter.name, {"kind": "json"}), values.get(parameter.name, []),
                                  parameter.annotation)
        if parameter.has_default:
            schema["description"] = f"default {parameter.default}"
        else:
            required.append(parameter.name)
        properties[parameter.name] = schema
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": any(p.kind == "VAR_KEYWORD" for p in spec.parameters)}


def document(capture: Capture, python_version: str) -> dict[str, Any]:
    spec = capture.spec
    example = next((e for e in capture.examples if e.replayable), None)
    first_body = example.body if example else {}
    result_sample = example.fresh_result if example else None
    answer: dict[str, Any] = {"type": "object", "required": ["result"],
                              "properties": {"result": json_schema(spec.codecs.get("result", {"kind": "json"}),
                                                                   result_sample)}}
    if spec.prints:
        answer["properties"]["stdout"] = {"type": "string", "description": "what the function printed"}
        answer["required"].append("stdout")
    bound = ", ".join(f"`{name}`" for name in sorted(spec.bound))
    description = (f"Calls `{spec.function}{spec.signature}` from {capture.notebook_name}."
                   + (f" Supplied by the server, not the request: {bound} (the notebook's objects)." if bound else ""))
    json_body: dict[str, Any] = {"schema": request_schema(capture)}
    if example:
        json_body["example"] = first_body
    return {
        "openapi": "3.1.0",
        "info": {"title": spec.function, "version": nb2container.__version__,
                 "description": f"Served by nb2container from {capture.notebook_name} (Python {python_version})."},
        "paths": {
            "/predict": {"post": {
                "summary": f"Call {spec.function}", "description": description, "operationId": "predict",
                "requestBody": {"required": True, "content": {"application/json": json_body}},
                "responses": {
                    "200": {"description": "the function's answer",
                            "content": {"application/json": {"schema": answer}}},
                    "400": _error("the body is not JSON, neither an object nor an array, or nests deeper "
                                  f"than {contract.MAX_DEPTH} levels"),
                    "405": _error("only POST"),
                    "413": _error(f"the body is larger than {body_limit(capture)} bytes (NB2C_MAX_BODY_BYTES "
                                  "sets the limit), or would take more memory once parsed than a worker "
                                  "may hold for requests (NB2C_MEMORY_BUDGET_BYTES)"),
                    "422": _error("the arguments do not fit the function: unknown, missing, of another "
                                  "type than the notebook's calls (or the type hints) say, not finite, or "
                                  "an integer beyond 64 bits"),
                    "500": _error("the function raised; the error_id is in the container's log"),
                    "503": _error("the model is still loading, or the worker holds as much request data "
                                  "as its memory budget allows; retry after Retry-After seconds"),
                    "504": _error("the call ran past the timeout (NB2C_TIMEOUT) and was stopped"),
                }}},
            "/health": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/ready": {"get": {"summary": "readiness", "responses": {
                "200": {"description": "ready"}, "503": {"description": "still loading"}}}},
            "/metadata": {"get": {"summary": "function, signature, versions, source notebook",
                                  "responses": {"200": {"description": "metadata"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics: requests, errors, latency, batch sizes",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {}}}}}},
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}
