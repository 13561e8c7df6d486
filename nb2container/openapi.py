"""The OpenAPI 3 document of the image's endpoints, written into the build folder.

``/predict`` is described from the function's signature and type hints and from the codecs
inferred from the notebook's calls; its example is the notebook's own first replayable call.
"""

from __future__ import annotations

from typing import Any

import nb2container
from nb2container.model import Capture
from nb2container.runtime.codecs import json_schema

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "error_id": {"type": "string"}}}
_HINTS = {"int": {"type": "integer"}, "float": {"type": "number"}, "str": {"type": "string"},
          "bool": {"type": "boolean"}, "list": {"type": "array"}, "dict": {"type": "object"}}


def json_type(annotation: str | None, codec: dict[str, Any]) -> str | None:
    """The JSON type a parameter's type hint asks for (the server checks it), if plain JSON."""
    if codec.get("kind", "json") != "json" or annotation not in _HINTS:
        return None
    return str(_HINTS[annotation]["type"])


def document(capture: Capture, python_version: str) -> dict[str, Any]:
    spec = capture.spec
    example = next((e for e in capture.examples if e.replayable), None)
    first_body = example.body if example else {}
    params = spec.codecs.get("params", {})
    properties, required = {}, []
    for parameter in spec.parameters:
        if parameter.name in spec.bound or parameter.kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        codec = params.get(parameter.name, {"kind": "json"})
        sample = first_body.get(parameter.name) if isinstance(first_body, dict) else None
        schema = json_schema(codec, sample)
        wanted = json_type(parameter.annotation, codec)
        if wanted:
            schema["type"] = wanted
        if parameter.has_default:
            schema["description"] = f"default {parameter.default}"
        else:
            required.append(parameter.name)
        properties[parameter.name] = schema
    request_schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                                      "additionalProperties": any(p.kind == "VAR_KEYWORD" for p in spec.parameters)}
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
    json_body = {"schema": request_schema}
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
                    "400": _error("the body is not JSON, or neither an object nor an array"),
                    "405": _error("only POST"),
                    "413": _error("the body is larger than the limit (NB2C_MAX_BODY_BYTES)"),
                    "422": _error("the arguments do not fit the function: unknown, missing, or of "
                                  "another type than the type hints say"),
                    "500": _error("the function raised; the error_id is in the container's log"),
                    "503": _error("the model is still loading"),
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
