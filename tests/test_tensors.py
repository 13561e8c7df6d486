"""Tensors as first-class values (pure logic and the in-process server): a torch tensor travels as
nested lists and comes back as a CPU tensor of its dtype and dimensions; the OpenAPI schema says
which; a tensor that lives on a GPU is refused at capture, naming the parameter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nb2container.runtime import codecs

torch = pytest.importorskip("torch", reason="the tensor codec carries torch tensors (the notebooks' extra)")


def sent(value: object) -> Any:
    return json.loads(json.dumps(value, default=codecs.to_json))


def test_a_tensor_comes_back_as_a_cpu_tensor_of_its_dtype_and_dimensions() -> None:
    value = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    codec = codecs.describe(value)
    assert codec == {"kind": "tensor", "framework": "torch", "dtype": "float32", "ndim": 2}
    back = codecs.decode(codec, sent(value))
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32 and back.shape == (2, 3)
    assert torch.equal(back, value) and codecs.modules(codec) == {"torch"}
    with pytest.raises(ValueError, match="2 dimension"):
        codecs.decode(codec, [1.0, 2.0])
    with pytest.raises(ValueError, match="expected an array"):
        codecs.decode(codec, [["a", "b"]])
    assert sent(torch.tensor([1.5, 2.0], requires_grad=True).sum()) == 3.5  # a 0-d result, with a graph


def test_tensors_widen_as_torch_promotes_and_are_described_for_openapi() -> None:
    calls = [torch.tensor([1, 2]), torch.tensor([[1.5], [2.5]], dtype=torch.float32)]
    merged = codecs.merge([codecs.describe(t) for t in calls])
    assert merged == {"kind": "tensor", "framework": "torch", "dtype": "float32", "ndim": None}  # not float64
    assert codecs.decode(merged, [[1], [2]]).dtype == torch.float32
    schema = codecs.json_schema(codecs.describe(torch.zeros(2, 2, dtype=torch.int64)))
    assert schema["type"] == "array" and schema["items"] == {"type": "array", "items": {"type": "integer"}}
    assert codecs.json_schema(codecs.describe(torch.zeros(2, dtype=torch.bfloat16)))["items"] == {"type": "number"}
    assert codecs.from_annotation("torch.Tensor") == {"kind": "tensor", "framework": "torch", "dtype": None,
                                                      "ndim": None}


def test_a_tensor_on_a_gpu_is_refused_naming_the_parameter(shell: Any, tmp_path: Path) -> None:
    """No GPU is lent here: a stand-in with torch's name and a CUDA device, as a CUDA tensor reads."""
    from nb2container.captured import read_raw
    from nb2container.errors import CaptureError
    from nb2container.kernel.capture import capture_to_file
    from nb2container.kernel.recorder import CallRecorder
    from nb2container.kernel.request import CaptureRequest

    device = type("device", (), {"type": "cuda", "__str__": lambda self: "cuda:0"})()
    shell.user_ns["CudaTensor"] = type("Tensor", (), {"__module__": "torch", "device": device,
                                                     "tolist": lambda self: [1.0]})
    CallRecorder(shell, "total").install()
    for source in ["def total(t):\n    return 1.0", "total(CudaTensor())"]:
        assert shell.run_cell(source, store_history=True).success, source
    capture_to_file(shell.user_ns, CaptureRequest("total", str(tmp_path)))
    with pytest.raises(CaptureError) as refused:
        read_raw(tmp_path, "nb.ipynb")
    message = str(refused.value)
    assert "`total`'s parameter `t` gets a tensor on cuda:0 (the calls at In [2])" in message, message
    assert "`t.cpu()`" in message


def test_the_served_function_gets_a_tensor_not_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23's reproduction: total(torch.tensor([1.0, 2.0, 3.5])) answered 500 ('list' object has no
    attribute 'sum')."""
    import shutil
    import sys

    from nb2container.runtime import wsgi
    from tests.test_contract import APPS, call

    folder = tmp_path / "tensor"
    shutil.copytree(APPS / "tensor", folder)
    monkeypatch.delitem(sys.modules, "notebook_function", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    service = wsgi.Service(folder)
    service.load()
    service.start()
    app = wsgi.create_app(service)
    assert call(app, b'{"t": [1.0, 2.0, 3.5]}') == (200, {"result": 6.5})
    status, payload = call(app, b'{"t": [[1.0]]}')
    assert status == 422 and "`t`[0] must be a number" in payload["error"]  # the contract: one dimension
    sys.modules.pop("notebook_function", None)
