"""Micro-batching: the model calls of concurrent requests meet in one call, and are split back.

A notebook function is rarely vectorised itself (``predict_price(area, rooms)`` builds a
one-row frame and calls ``model.predict``), but the model it calls is. So batching happens
where the work is: the notebook's model object is wrapped, and each call to one of its
batched methods (``predict`` and the like) waits a moment for the same call from other
requests of this worker. The rows are stacked, the real method runs once, and each request
gets its own rows back. Requests whose inputs cannot be stacked alike (other columns, other
dtypes, extra arguments) are called alone, so every answer is the one an unbatched call gives.

A batch leaves as soon as it is full (NB2C_BATCH_MAX_SIZE), as soon as every call now in
flight has joined it, when no call joined for a moment (GAP_SECONDS), or after
NB2C_BATCH_MAX_WAIT_MS; a lone request never waits.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A batch that no call joined for this long leaves: the calls still in flight are past the model.
GAP_SECONDS = 0.0003
# Methods of an estimator whose rows are independent: row i of the answer is row i of the input.
ROW_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


@dataclass(frozen=True)
class Settings:
    targets: tuple[tuple[str, str], ...]  # (module global, method)
    max_size: int
    max_wait: float  # seconds
    timeout: float | None = None  # seconds a call waits for its batch
    @classmethod
    def from_environment(cls, artifacts: list[str], timeout: float | None = None) -> Settings | None:
        """NB2C_BATCH: "model.predict,model.predict_proba", or "auto": the row-wise methods of
        each of the notebook's saved objects (``artifacts``); empty or unset: no batching.
        ``timeout``: how long a call waits for its batch (the server's NB2C_TIMEOUT)."""
        value = os.environ.get("NB2C_BATCH", "").strip()
        if not value:
            return None
        items = [item.strip() for item in value.split(",")]
        if "auto" in items:
            items = [f"{name}.{method}" for name in artifacts for method in ROW_METHODS]
        targets = tuple(tuple(item.rsplit(".", 1)) for item in items if "." in item)
        return cls(targets,  # type: ignore[arg-type]
                   int(os.environ.get("NB2C_BATCH_MAX_SIZE", "64")),
                   float(os.environ.get("NB2C_BATCH_MAX_WAIT_MS", "5")) / 1000, timeout)


class BatchTimeout(Exception):
    pass


class InFlight:
    """How many calls of the function are running in this worker (a batch waits for no more)."""

    def __init__(self) -> None:
        self.count, self.lock = 0, threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.count += 1

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.count -= 1


IN_FLIGHT = InFlight()


def install(module: Any, settings: Settings, observe: Callable[[int], None]) -> None:
    """Wrap the module's objects named in ``settings`` so their methods batch."""
    methods: dict[str, list[str]] = {}
    for name, method in settings.targets:
        if callable(getattr(getattr(module, name, None), method, None)):
            methods.setdefault(name, []).append(method)
    for name, names in methods.items():
        target = getattr(module, name)
        setattr(module, name, Batched(target, {m: Batcher(getattr(target, m), settings, observe) for m in names}))


class Batched:
    """Stands in for the notebook's object: batched methods go through their Batcher, the rest
    reaches the object itself."""

    def __init__(self, target: Any, batchers: dict[str, Batcher]) -> None:
        self.__dict__.update(_target=target, _batchers=batchers)

    def __getattr__(self, name: str) -> Any:
        batcher = self._batchers.get(name)
        return batcher if batcher is not None else getattr(self._target, name)

    def __repr__(self) -> str:
        return repr(self._target)


class _Item:
    def __init__(self, rows: Any, key: tuple[Any, ...], count: int) -> None:
        self.rows, self.key, self.count = rows, key, count
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Batcher:
    def __init__(self, method: Callable[..., Any], settings: Settings, observe: Callable[[int], None]) -> None:
        self.method, self.settings, self.observe = method, settings, observe
        self.items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="nb2c-batcher", daemon=True).start()

    def __call__(self, rows: Any, *args: Any, **kwargs: Any) -> Any:
        key = _stack_key(rows)
        if args or kwargs or key is None:
            return self.method(rows, *args, **kwargs)
        item = _Item(rows, key, len(rows))
        self.items.put(item)
        if not item.done.wait(self.settings.timeout):
            raise BatchTimeout(f"the batched model call ran past the timeout of {self.settings.timeout:g} s")
        if item.error is not None:
            raise item.error
        return item.result

    def _loop(self) -> None:
        while True:
            batch = [self.items.get()]
            deadline = time.monotonic() + self.settings.max_wait
            while len(batch) < self.settings.max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.items.empty() and len(batch) >= IN_FLIGHT.count):
                    break  # waited long enough, or every call in flight is here
                try:
                    batch.append(self.items.get(timeout=min(remaining, GAP_SECONDS)))
                except queue.Empty:
                    break  # nobody came: the other calls in flight are done with the model
            groups: dict[tuple[Any, ...], list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Item]) -> None:
        self.observe(len(group))
        try:
            if len(group) == 1:
                group[0].result = self.method(group[0].rows)
            else:
                answer = self.method(_stack([item.rows for item in group]))
                parts = _split(answer, [item.count for item in group])
                if parts is None:  # an answer that is not one row per input row: call each alone
                    raise _NotRowWise
                for item, part in zip(group, parts, strict=True):
                    if hasattr(part, "index") and hasattr(item.rows, "index"):
                        part = part.copy()
                        part.index = item.rows.index  # as the request's own rows were numbered
                    item.result = part
        except _NotRowWise:
            for item in group:
                self._run([item])
            return
        except BaseException as exc:
            if len(group) > 1:  # find whose rows raised: each alone gets its own answer or error
                for item in group:
                    self._run([item])
                return
            group[0].error = exc
        for item in group:
            item.done.set()


class _NotRowWise(Exception):
    pass


def _stack_key(rows: Any) -> tuple[Any, ...] | None:
    """What inputs must share to be stacked into one, or None when this one cannot be."""
    kind = type(rows).__module__.split(".")[0], type(rows).__name__
    if kind == ("pandas", "DataFrame"):
        return (kind, tuple(rows.columns), tuple(str(t) for t in rows.dtypes), rows.index.name)
    if kind == ("numpy", "ndarray") and rows.ndim >= 1:
        return (kind, str(rows.dtype), rows.shape[1:])
    if isinstance(rows, list) and rows and all(isinstance(row, list) for row in rows):
        return (("builtins", "list"),)
    return None


def _stack(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, list):
        return [row for part in parts for row in part]
    if type(first).__name__ == "DataFrame":
        import pandas

        return pandas.concat(parts, ignore_index=True)
    import numpy

    return numpy.concatenate(parts)


def _split(answer: Any, counts: list[int]) -> list[Any] | None:
    try:
        if len(answer) != sum(counts):
            return None
    except TypeError:
        return None
    parts, start = [], 0
    by_position = getattr(answer, "iloc", answer)  # a Series or DataFrame answer keeps its index order
    for count in counts:
        parts.append(by_position[start:start + count])
        start += count
    return parts
