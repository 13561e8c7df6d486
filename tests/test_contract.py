"""The served contract, in-process: derived once from the notebook's calls, documented in
/openapi.json, and enforced by the server's WSGI application before the function runs.

No engine and no kernel: the application factory (``wsgi.create_app``) serves a small
generated module from a temporary folder, as the image serves the real one."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from nb2container import openapi
from nb2container.model import Capture, Example, KernelInterpreter, Parameter, ServingSpec
from nb2container.runtime import contract, wsgi

MODULE = '''
import math


def predict_price(area_sqft, num_bedrooms, weights=None):
    if area_sqft < 0:
        raise ValueError(f"area must not be negative, got {area_sqft}")
    return float(area_sqft) * 150 + num_bedrooms * 10_000 + (weights or 0)
'''


def house_capture(tmp_path: Path, bodies: list[Any]) -> Capture:
    parameters = (Parameter("area_sqft", "POSITIONAL_OR_KEYWORD", False, None, None),
                  Parameter("num_bedrooms", "POSITIONAL_OR_KEYWORD", False, None, None),
                  Parameter("weights", "POSITIONAL_OR_KEYWORD", True, "None", None))
    json_codec = {"kind": "json"}
    spec = ServingSpec("predict_price", "(area_sqft, num_bedrooms, weights=None)", parameters, False, (), (),
                       (MODULE,), (), codecs={"params": {p.name: json_codec for p in parameters},
                                              "result": json_codec})
    examples = tuple(Example(n + 1, n + 1, [], body, None, None, None, body=body) for n, body in enumerate(bodies))
    return Capture(None, "0" * 64, spec, KernelInterpreter("3.11.7", "cpython", "python", "x86_64", {}), (),
                   examples, len(examples), tmp_path / "artifacts")


@pytest.fixture(params=["by-name", "through-the-signature"])
def app(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """The house-price app; every test runs on the common call's path (a JSON object of the
    parameters passed by name) and on the general one (Signature.bind): the two must agree."""
    capture = house_capture(tmp_path, [{"area_sqft": 1500, "num_bedrooms": 3},
                                       {"area_sqft": 2100.5, "num_bedrooms": 4, "weights": float("nan")}])
    folder = tmp_path / "app"
    folder.mkdir()
    module = f"house_{tmp_path.name.replace('-', '_')}"  # one module per test: no stale import
    (folder / f"{module}.py").write_text(MODULE)
    (folder / "spec.json").write_text(json.dumps({
        "module": module, "function": "predict_price", "signature": capture.spec.signature, "bound": {},
        "codecs": capture.spec.codecs, "request_schema": openapi.request_schema(capture)}))
    (folder / "openapi.json").write_text(json.dumps(openapi.document(capture, "3.11.7")))
    service = wsgi.Service(folder)
    service.load()
    service.ready.set()
    assert service._by_name() == {"area_sqft", "num_bedrooms", "weights"}  # the JSON codec restores nothing
    if request.param == "through-the-signature":
        service._by_name = lambda: None  # type: ignore[method-assign]
    return wsgi.create_app(service)


def call(app: Any, body: bytes, method: str = "POST", path: str = "/predict") -> tuple[int, Any]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    payload = b"".join(app(environ, start_response))
    assert answer["headers"]["Content-Type"] == "application/json"
    return answer["status"], json.loads(payload)


def test_every_recorded_value_shapes_the_schema() -> None:
    assert contract.of_values([1500, 2100.5])["type"] == "number"  # integers and floats: number
    assert contract.of_values([3, 4])["type"] == "integer"
    assert contract.of_values(["a", None])["type"] == ["null", "string"]
    nested = contract.of_values([[1, 2], [3.5]])
    assert nested["type"] == "array" and nested["items"]["type"] == "number"
    assert contract.of_values([{"a": 1}, {"a": 2.5, "b": "x"}])["properties"]["a"]["type"] == "number"
    assert contract.flags([[1.0, float("inf")]]) == {contract.NON_FINITE: True}
    assert contract.flags([10**30]) == {contract.BIG_INTEGERS: True}
    assert contract.depth([[[1]]]) == 3 and contract.depth(5) == 0


def test_what_openapi_documents_is_what_the_server_enforces(tmp_path: Path) -> None:
    capture = house_capture(tmp_path, [{"area_sqft": 1500, "num_bedrooms": 3}])
    document = openapi.document(capture, "3.11.7")
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == openapi.request_schema(capture)
    assert body["properties"]["area_sqft"]["type"] == "integer"
    assert body["properties"]["area_sqft"]["maximum"] == 2**63 - 1 and body["additionalProperties"] is False


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"[" * 1000 + b"]" * 1000, 400, "nests deeper than 32"),
    (b'{"area_sqft": ' + b"[" * 40 + b"1" + b"]" * 40 + b', "num_bedrooms": 3}', 400, "nests deeper than 32"),
    (b'{"area_sqft": Infinity, "num_bedrooms": 3}', 422, "`area_sqft` must be a finite number"),
    (b'{"area_sqft": 1e400, "num_bedrooms": 3}', 422, "`area_sqft` must be a finite number"),
    (b'{"area_sqft": NaN, "num_bedrooms": 3}', 422, "`area_sqft` must be a finite number"),
    (b'{"area_sqft": "1500", "num_bedrooms": 3}', 422, "`area_sqft` must be a number"),
    (b'{"area_sqft": [1500], "num_bedrooms": 3}', 422, "`area_sqft` must be a number"),
    (b'{"area_sqft": {"v": 1}, "num_bedrooms": 3}', 422, "`area_sqft` must be a number"),
    (b'{"area_sqft": 1500, "num_bedrooms": 3.5}', 422, "`num_bedrooms` must be an integer"),
    (b'{"area_sqft": 1500, "num_bedrooms": true}', 422, "`num_bedrooms` must be an integer"),
    (b'{"area_sqft": 1500, "num_bedrooms": 1' + b"0" * 400 + b"}", 422, "`num_bedrooms` is an integer of 401 digits"),
    (b'{"area_sqft": 1500, "num_bedrooms": 3, "rooms": 3}', 422, "unexpected keyword argument 'rooms'"),
    (b'{"area_sqft": 1500}', 422, "missing a required argument: 'num_bedrooms'"),
    (b'"1500"', 400, "must be a JSON object"),
    (b"{not json", 400, "not valid JSON"),
])
def test_bad_input_is_a_4xx_naming_the_parameter(app: Any, body: bytes, status: int, says: str) -> None:
    got, payload = call(app, body)
    assert got == status and says in payload["error"], payload
    assert call(app, b'{"area_sqft": 1500, "num_bedrooms": 3}') == (200, {"result": 255000.0})


def test_an_integral_number_is_an_integer_as_in_json_schema() -> None:
    schema = contract.of_values([3, 4])
    assert contract.check(schema, 3.0, "n") == 3 and isinstance(contract.check(schema, 3.0, "n"), int)
    assert contract.check({"type": "array", "items": schema}, [1.0, 2], "ns") == [1, 2]
    with pytest.raises(contract.ContractError, match="`n` must be an integer"):
        contract.check(schema, 3.5, "n")


def test_a_non_finite_value_a_recorded_call_passed_is_accepted(app: Any) -> None:
    status, payload = call(app, b'{"area_sqft": 1000, "num_bedrooms": 1, "weights": NaN}')
    assert status == 200 and math.isnan(payload["result"])


def test_an_exception_on_valid_input_is_a_500_with_an_error_id(app: Any) -> None:
    status, payload = call(app, b'{"area_sqft": -5, "num_bedrooms": 1}')
    assert status == 500 and len(payload["error_id"]) == 12
    assert payload["error"] == f"ValueError in predict_price (error id {payload['error_id']}; its message is " \
                               "in the server's log)"  # the message may hold paths, data or secrets
    assert call(app, b"[1000, 2]") == (200, {"result": 170000.0})  # positional, and it serves on


def test_the_other_endpoints_in_process(app: Any) -> None:
    assert call(app, b"", "GET", "/health") == (200, {"status": "ok"})
    assert call(app, b"", "GET", "/ready") == (200, {"ready": True})
    assert call(app, b"", "GET", "/nowhere")[0] == 404
    status, payload = call(app, b"", "GET", "/predict")
    assert status == 405 and "answers POST" in payload["error"]
    status, document = call(app, b"", "GET", "/openapi.json")
    assert status == 200 and document["paths"]["/predict"]["post"]["operationId"] == "predict"


# --- the fixture apps (tests/fixtures/apps/): the contract as the image's /app serves it ---

APPS = Path(__file__).resolve().parent / "fixtures" / "apps"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Serve one fixture app in-process: ``served("scorer")`` -> the WSGI application."""
    import shutil
    import sys

    def serve(case: str) -> Any:
        folder = tmp_path / case
        shutil.copytree(APPS / case, folder)  # its bytecode is written here, not into the tree
        monkeypatch.delitem(sys.modules, "notebook_function", raising=False)
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.setattr(sys, "stdout", sys.stdout)  # Service.start wraps it, as in a worker
        service = wsgi.Service(folder)
        service.load()
        service.start()
        return wsgi.create_app(service)

    yield serve
    sys.modules.pop("notebook_function", None)


@pytest.mark.parametrize(("body", "status", "says"), [
    (b'{"x": 1.5', 400, "not valid JSON"),
    (b"", 400, "the body is empty"),
    (b'{"x": "1.5"}', 422, "`x` must be a number"),
    (b'{"x": 1.5, "busy": 1}', 422, "`busy` must be a boolean"),
    (b'{"x": Infinity}', 422, "`x` must be a finite number"),
    (b'{"x": ' + b"[" * 100 + b"]" * 100 + b"}", 400, "nests deeper than 32"),
    (b'{"x": 1, "padding": "' + b"a" * 3000 + b'"}', 413, "over the limit of 2048"),
    (b"[1, true, 3]", 422, "arguments do not match score(x: float, busy: bool = False) -> float"),
])
def test_bad_input_to_a_served_app_is_a_4xx_and_it_serves_on(
    served: Any, monkeypatch: pytest.MonkeyPatch, body: bytes, status: int, says: str
) -> None:
    monkeypatch.setattr(wsgi, "MAX_BODY_BYTES", 2048)  # NB2C_MAX_BODY_BYTES=2048
    app = served("scorer")
    got, payload = call(app, body)
    assert got == status and says in payload["error"], payload
    assert call(app, b'{"x": 1.0}') == (200, {"result": 2.0})


def test_an_exception_is_a_500_with_an_error_id_that_the_log_holds(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = served("scorer")
    status, payload = call(app, b'{"x": -1}')
    assert status == 500 and payload["error"].startswith("ValueError in score (error id ")
    assert "negative" not in payload["error"]
    logged = [json.loads(r.getMessage()) for r in caplog.records if payload["error_id"] in r.getMessage()]
    assert logged and "Traceback" in logged[0]["traceback"] and "x must not be negative" in logged[0]["traceback"]
    assert call(app, b"[4.0]") == (200, {"result": 8.0})  # positional, and the next call succeeds


def test_a_500_carries_the_message_only_when_the_operator_asks(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsgi, "ERROR_DETAILS", True)  # NB2C_ERROR_DETAILS=1
    status, payload = call(served("scorer"), b'{"x": -1}')
    assert status == 500 and payload["error"] == "ValueError: x must not be negative, got -1"


class _MalformedBody(io.RawIOBase):
    """The server's body reader refusing a chunk's framing, as gunicorn's does."""

    def read(self, size: int = -1) -> bytes:
        from gunicorn.http.errors import InvalidChunkSize

        raise InvalidChunkSize(b"zz")


def test_a_malformed_body_is_the_clients_400_not_the_functions_error(served: Any) -> None:
    app = served("scorer")
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = int(status.split()[0])

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "wsgi.input": _MalformedBody()}
    payload = json.loads(b"".join(app(environ, start_response)))
    assert answer["status"] == 400 and "not well-formed HTTP" in payload["error"], payload
    assert call(app, b'{"x": 1.0}') == (200, {"result": 2.0})


def test_metrics_labels_take_a_bounded_set_of_values(served: Any) -> None:
    app = served("scorer")
    for n in range(50):
        call(app, b"", f"INVENTED{n}", f"/made-up/{n}")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO(b"")}
    metrics = b"".join(app(environ, lambda status, headers: None)).decode()
    assert [line for line in metrics.splitlines() if "INVENTED" in line or "made-up" in line] == []
    assert 'nb2c_requests_total{code="404",method="other",path="other"} 50.0' in metrics


def test_methods_paths_metadata_and_metrics_of_a_served_app(served: Any) -> None:
    app = served("scorer")
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/predict", "wsgi.input": io.BytesIO(b"")}
    payload = json.loads(b"".join(app(environ, start_response)))
    assert answer["status"] == 405 and answer["headers"]["Allow"] == "POST" and "answers POST" in payload["error"]
    assert call(app, b"", "GET", "/nowhere") == (404, {"error": "no such endpoint: GET /nowhere; see /openapi.json"})
    status, metadata = call(app, b"", "GET", "/metadata")
    assert status == 200 and metadata["function"] == "score" and metadata["notebook"] == "serving_faults.ipynb"
    call(app, b'{"x": 1.5}')
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO(b"")}
    metrics = b"".join(app(environ, start_response)).decode()
    assert answer["headers"]["Content-Type"].startswith("text/plain")
    assert 'nb2c_requests_total{code="200",method="POST",path="/predict"}' in metrics


def test_a_bound_parameter_is_the_servers_and_never_the_requests(served: Any) -> None:
    app = served("bound")
    assert call(app, b'{"text": "a good, great day"}') == (200, {"result": 2})
    assert call(app, b'["good"]') == (200, {"result": 1})  # positions count what the request sends
    status, payload = call(app, b'{"text": "good", "model": "mine"}')
    assert status == 422 and "`model` is supplied by the server" in payload["error"]
    status, payload = call(app, b'["good", "mine"]')
    assert status == 422 and "takes 1 from the request (text)" in payload["error"]


def test_what_the_function_prints_comes_back_with_its_answer(served: Any) -> None:
    app = served("printing")
    assert call(app, b'{"n": 2}') == (200, {"result": 2, "stdout": "line 0\nline 1\n"})
    status, payload = call(app, b'{"n": 101}')
    assert status == 422 and "`n`" in payload["error"]


# --- memory a client cannot exhaust (runtime/budget.py) ---------------------------------------

def test_the_default_body_limit_comes_from_the_contract() -> None:
    numbers = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": ["integer", "null"]}},
               "additionalProperties": False}
    assert contract.body_limit(numbers, [40]) == 64 * 1024  # a call of two numbers needs no 10 MB
    text = {"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": False}
    assert contract.body_limit(text, [200]) == 1024 * 1024
    frame = {"type": "object", "properties": {"rows": {"type": "array"}}, "additionalProperties": False}
    assert contract.body_limit(frame, [200_000, 3_000_000]) == 48_000_000  # room in proportion
    assert contract.body_limit({**numbers, "additionalProperties": True}, [40]) == 1024 * 1024  # **kwargs


def test_a_body_too_costly_to_parse_is_413_before_it_is_parsed(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 KB of `[{},{},...]` would become some 7 MB of dicts: past a 1 MiB budget it is refused
    unparsed, and what the request took is given back."""
    from nb2container.runtime import budget

    monkeypatch.setattr(wsgi, "BUDGET", budget.Budget(2**20))
    monkeypatch.setattr(json, "loads", _never_called(json.loads, b"[{},"))
    app = served("scorer")
    status, payload = call(app, b'{"x": [' + b",".join([b"{}"] * 100_000) + b"]}")
    assert status == 413 and "once parsed" in payload["error"] and "NB2C_MEMORY_BUDGET_BYTES" in payload["error"]
    assert wsgi.BUDGET.used == 0
    assert call(app, b'{"x": 1.0}') == (200, {"result": 2.0}) and wsgi.BUDGET.used == 0


def _never_called(loads: Any, marker: bytes) -> Any:
    def guarded(raw: Any, *args: Any, **kwargs: Any) -> Any:
        assert marker not in (raw if isinstance(raw, bytes) else str(raw).encode()), "parsed a refused body"
        return loads(raw, *args, **kwargs)
    return guarded


def test_past_the_budget_a_request_gets_503_and_retry_after(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2container.runtime import budget

    monkeypatch.setattr(wsgi, "BUDGET", budget.Budget(2**20))
    app = served("scorer")
    assert wsgi.BUDGET.take(2**20 - 10)  # other requests hold nearly all of it
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "CONTENT_LENGTH": "10",
               "wsgi.input": io.BytesIO(b'{"x": 1.0}')}
    payload = json.loads(b"".join(app(environ, start_response)))
    assert answer["status"] == 503 and answer["headers"]["Retry-After"] == "1" and "budget" in payload["error"]
    wsgi.BUDGET.give(2**20 - 10)
    assert call(app, b'{"x": 1.0}') == (200, {"result": 2.0}) and wsgi.BUDGET.used == 0


def test_a_chunked_body_over_the_limit_is_413_read_no_further(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsgi, "MAX_BODY_BYTES", 2048)
    app = served("scorer")
    body = io.BytesIO(b'{"x": 1, "pad": "' + b"a" * 100_000 + b'"}')
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "wsgi.input": body}  # no length: chunked
    payload = json.loads(b"".join(app(environ, lambda status, headers: None)))
    assert "over the limit of 2048" in payload["error"] and body.tell() <= 2048 + wsgi.READ_PIECE


def test_the_parse_cost_is_never_below_what_parsing_takes() -> None:
    import tracemalloc

    from nb2container.runtime import budget

    for value in ([{}] * 20_000, [1.5] * 20_000, [{"a": n, "b": "x"} for n in range(20_000)],
                  {"text": "hello, world " * 5_000}, [[n, n + 1] for n in range(20_000)]):
        raw = json.dumps(value).encode()
        tracemalloc.start()
        parsed = json.loads(raw)
        taken = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert parsed == value and budget.parse_cost(raw) >= taken, (raw[:40], budget.parse_cost(raw), taken)
