"""The HTTP contract of the served function, inferred from the calls the notebook made.

For each parameter, a codec (how its value travels as JSON) from what the calls passed, else
from its type hint. A parameter that every call fills with the same object that has no JSON
form (a fitted model, a vectorizer) is *bound*: the object ships as an artifact and the server
supplies it, so requests carry only the other parameters. ``--bind``/``--no-bind`` override.
Each call then gets the request body that replays it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from nb2container.kernel.refusal import Refusal
from nb2container.runtime import codecs


@dataclass
class Interface:
    params: dict[str, dict[str, Any]]  # parameter -> codec
    result: dict[str, Any]
    bound: dict[str, str] = field(default_factory=dict)  # parameter -> the module global that holds it
    bound_objects: dict[str, Any] = field(default_factory=dict)  # that global -> the object
    prints: bool = False
    notes: list[str] = field(default_factory=list)  # options that changed nothing, said as warnings

    def as_dict(self) -> dict[str, Any]:
        return {"codecs": {"params": self.params, "result": self.result}, "bound": self.bound,
                "prints": self.prints}


def infer(
    fn: Any,
    calls: list[dict[str, Any]],
    objects: dict[int, Any],
    ns: dict[str, Any],
    bind: list[str] | None = None,
    no_bind: bool = False,
) -> Interface:
    signature = inspect.signature(fn)
    unknown = sorted(set(bind or []) - set(signature.parameters))
    if unknown:
        raise Refusal("bad_bind", f"--bind names `{unknown[0]}`, which is not a parameter of "
                                  f"`{fn.__name__}{signature}`.")
    params = {}
    for name, parameter in signature.parameters.items():
        passing = [call for call in calls if name in call["codecs"]]
        annotation = None if parameter.annotation is inspect.Parameter.empty else (
            parameter.annotation if isinstance(parameter.annotation, str)
            else _qualified(parameter.annotation))
        params[name] = _merge(fn, name, passing) if passing else (
            codecs.from_annotation(annotation) or {"kind": "json"})
    interface = Interface(params, codecs.merge([call["result_codec"] for call in calls]),
                          prints=any(call["stdout"] for call in calls))
    for name, codec in params.items():
        if codec.get("device"):
            raise Refusal(
                "device_tensor",
                f"`{fn.__name__}`'s parameter `{name}` gets a tensor on {codec['device']} "
                f"({_cells([c for c in calls if name in c['codecs']]) or 'in the recorded calls'}): a request "
                "carries its values as JSON, and the image restores tensors on the CPU. Pass it on the CPU in "
                "the notebook's calls (`t.cpu()` in PyTorch, `with tf.device('/CPU:0')` in TensorFlow) and "
                "move it inside the function if it needs the GPU, then build again.",
                parameter=name,
            )
        wanted = name in (bind or []) or (codec["kind"] == "object" and not no_bind)
        if name in (bind or []) and codec["kind"] == "object":
            interface.notes.append(f"--bind {name} changes nothing: every call passes `{name}` the same object "
                                   "with no JSON form, so it is bound without being asked")
        if wanted:
            _bind(interface, fn, name, calls, objects, ns, asked=name in (bind or []))
    for call in calls:
        _set_body(call, signature, interface)
    return interface


def _qualified(annotation: Any) -> str | None:
    """``tensorflow.python.framework.tensor.Tensor``: the module tells tf.Tensor from torch.Tensor."""
    name = getattr(annotation, "__name__", None)
    module = getattr(annotation, "__module__", None)
    return f"{module}.{name}" if name and module and module != "builtins" else name


def _merge(fn: Any, name: str, passing: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameter's codec from the calls that pass it; refused when the server could not tell
    the types the calls passed apart by their JSON."""
    try:
        return codecs.merge([call["codecs"][name] for call in passing],
                            [call["arguments"].get(name) for call in passing])
    except codecs.AmbiguousCodec as exc:
        cells = {kind: _cells([c for c in passing if c["codecs"][name]["kind"] == kind]) for kind in exc.kinds}
        where = " and ".join(f"{exc.named(kind)} at {cells[kind]}" for kind in exc.kinds)
        raise Refusal(
            "ambiguous_types",
            f"`{fn.__name__}`'s parameter `{name}` gets {where.replace('the calls at ', '')}: {exc}, so the "
            "server could not tell from a request which to give the function. Pass one type in every call "
            "(convert where you call it, e.g. np.asarray(values) or values.tolist()), then build again.",
            parameter=name,
        ) from None


def _bind(interface: Interface, fn: Any, name: str, calls: list[dict[str, Any]],
          objects: dict[int, Any], ns: dict[str, Any], asked: bool = False) -> None:
    passing = [call for call in calls if name in call["codecs"]]
    ids = {call["object_ids"].get(name) for call in passing}
    if not passing or None in ids:
        where = _cells([c for c in passing if name not in c["object_ids"]]) or "no recorded call"
        raise Refusal(
            "cannot_bind",
            f"`{fn.__name__}`'s parameter `{name}` cannot be bound to one notebook object: {where} "
            f"passes it a plain value (or none). Bind only a parameter that every call fills with the "
            f"same object, or drop --bind {name}.",
            parameter=name,
        )
    if len(ids) > 1:
        raise Refusal(
            "varying_object",
            f"`{fn.__name__}`'s parameter `{name}` gets a different object with no JSON form in "
            f"different calls ({_cells(passing)}), so it can neither be sent as JSON nor bound to one "
            "object. Pass the same object in every call, or pass what it holds as plain values."
            + (f" (--bind {name} changes nothing here: it binds one object, and the calls pass several.)"
               if asked else ""),
            parameter=name,
        )
    obj = objects[ids.pop()]
    holders = sorted(k for k, v in ns.items() if v is obj and not k.startswith("_"))
    global_name = name if name in holders else (holders[0] if holders else f"_bound_{name}")
    interface.bound[name] = global_name
    interface.bound_objects[global_name] = obj


def _set_body(call: dict[str, Any], signature: inspect.Signature, interface: Interface) -> None:
    """The request body that replays ``call``: names -> values, or an array for positional-only calls."""
    if not call["replayable"]:
        return
    kinds = {name: p.kind for name, p in signature.parameters.items()}
    missing = [n for n in call["codecs"] if n not in interface.bound and n not in call["arguments"]]
    if missing:
        call["replayable"] = False
        call["reason"] = f"`{missing[0]}` has no JSON form and is not bound (--no-bind)"
        return
    passed = {n: v for n, v in call["arguments"].items() if n not in interface.bound}
    positional = [n for n in passed if kinds[n] in (inspect.Parameter.POSITIONAL_ONLY,
                                                    inspect.Parameter.VAR_POSITIONAL)]
    if positional:
        if interface.bound or any(kinds[n] == inspect.Parameter.VAR_KEYWORD for n in passed) or any(
                kinds[n] == inspect.Parameter.KEYWORD_ONLY for n in passed):
            call["replayable"] = False
            call["reason"] = "positional-only arguments mixed with keywords cannot be sent as JSON"
            return
        call["body"] = call["args"]
        return
    body = {n: v for n, v in passed.items() if kinds[n] != inspect.Parameter.VAR_KEYWORD}
    for n, v in passed.items():
        if kinds[n] == inspect.Parameter.VAR_KEYWORD:
            body.update(v)
    call["body"] = body


def _cells(calls: list[dict[str, Any]]) -> str:
    # "In [n]": the host names each cell its one way (captured.name_cells) from the count.
    counts = [f"In [{c['execution_count']}]" for c in calls if c.get("execution_count") is not None]
    return "the calls at " + ", ".join(counts) if counts else ""
