"""TensorFlow tensors as first-class values (pure logic): an eager tensor, or what a Keras model on
TensorFlow returns, travels as nested lists and comes back as a CPU ``tf.Tensor`` of its dtype and
rank; calls that disagree widen without turning float32 into float64; a tensor on a GPU is refused."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from nb2container.runtime import codecs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="the tensor codec carries tf tensors (the notebooks' extra)")


def sent(value: object) -> Any:
    return json.loads(json.dumps(value, default=codecs.to_json))


def test_a_tf_tensor_comes_back_as_a_cpu_tensor_of_its_dtype_and_rank() -> None:
    value = tf.reshape(tf.range(6, dtype=tf.float32), (2, 3))
    codec = codecs.describe(value)
    assert codec == {"kind": "tensor", "framework": "tensorflow", "dtype": "float32", "ndim": 2}
    back = codecs.decode(codec, sent(value))
    assert isinstance(back, tf.Tensor) and back.dtype == tf.float32 and back.shape == (2, 3)
    assert "CPU" in back.device and bool(tf.reduce_all(back == value))
    assert codecs.modules(codec) == {"tensorflow"}
    with pytest.raises(ValueError, match="2 dimension"):
        codecs.decode(codec, [1.0, 2.0])
    with pytest.raises(ValueError, match="expected an array"):
        codecs.decode(codec, [["a", "b"]])
    assert sent(tf.reduce_sum(tf.Variable([1.5, 2.0]))) == 3.5  # a 0-d result of a variable
    assert codecs.describe(tf.Variable([1, 2]))["framework"] == "tensorflow"


def test_tf_tensors_widen_to_the_widest_float_and_are_described_for_openapi() -> None:
    calls = [tf.constant([1, 2]), tf.constant([[1.5], [2.5]], dtype=tf.float32)]  # int32, float32
    merged = codecs.merge([codecs.describe(t) for t in calls])
    assert merged == {"kind": "tensor", "framework": "tensorflow", "dtype": "float32", "ndim": None}
    assert codecs.decode(merged, [[1], [2]]).dtype == tf.float32
    ints = codecs.merge([codecs.describe(tf.constant([1], dtype=d)) for d in (tf.int32, tf.int64)])
    assert ints["dtype"] == "int64"
    schema = codecs.json_schema(codecs.describe(tf.zeros((2, 2), dtype=tf.int32)))
    assert schema["items"] == {"type": "array", "items": {"type": "integer"}}
    assert codecs.from_annotation("tensorflow.python.framework.tensor.Tensor")["framework"] == "tensorflow"
    assert codecs.from_annotation("torch.Tensor")["framework"] == "torch"


def test_a_tf_tensor_on_a_gpu_is_described_as_an_object_with_its_device() -> None:
    """No GPU is lent here: a stand-in with TensorFlow's type name and a GPU device string."""
    stand_in = type("EagerTensor", (), {"__module__": "tensorflow.python.framework.ops",
                                        "device": "/job:localhost/replica:0/task:0/device:GPU:0"})()
    assert codecs.describe(stand_in) == {"kind": "object", "type": "tensorflow.Tensor",
                                         "device": "/job:localhost/replica:0/task:0/device:GPU:0"}
