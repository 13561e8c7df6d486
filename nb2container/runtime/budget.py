"""What clients can make a worker hold in memory, bounded so no traffic gets it OOM-killed.

A worker's budget is a share of the container's memory limit (the cgroup's, else the machine's):
``NB2C_MEMORY_BUDGET_BYTES``, else a quarter of the limit divided among the workers (the rest is
the model's, the interpreter's and the answers'). Against it count the requests the worker's
poller holds while they arrive, the bodies its threads read, and the Python objects a body will
become once parsed, estimated before parsing. Past it a request is refused (413 when it alone
could never fit, else 503 and retry), and nothing is parsed. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

BUSY = ("this worker holds as much request data as its memory budget allows (NB2C_MEMORY_BUDGET_BYTES); "
        "retry shortly")
SHARE = 4  # a quarter of the container's memory for what clients send, split among the workers


def memory_limit() -> int:
    """The container's memory limit in bytes: its cgroup's (v2, then v1), at most the machine's."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            return min(physical, int(Path(path).read_text().strip()))  # "max" (no limit) is a ValueError
    return physical


def per_worker(workers: int) -> int:
    configured = os.environ.get("NB2C_MEMORY_BUDGET_BYTES", "").strip()
    return int(configured) if configured else memory_limit() // (SHARE * max(1, workers))


def parse_cost(raw: bytes) -> int:
    """About how many bytes of memory ``json.loads(raw)`` will take, counted before parsing:
    10 MB of ``[{},{},...]`` becomes some 240 MB of dicts. Each piece of structure costs, over its
    own bytes (CPython 3.11, 64-bit, measured): a dict about 64-184 bytes, a list 56 and room to
    grow (96 each), each further value (a comma) a float or int and its slot (32), each key a
    string's header (64)."""
    return len(raw) + 96 * (raw.count(b"{") + raw.count(b"[")) + 32 * raw.count(b",") + 64 * raw.count(b":")


class Budget:
    """Bytes this worker holds for clients; ``take`` refuses what would pass the limit."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size

    def hold(self) -> Hold:
        """What one request takes, given back when it is answered (``with budget.hold() as held``)."""
        return Hold(self)


class Hold:
    """A request's share of the budget: a plain context manager, as it is entered per request."""

    def __init__(self, budget: Budget) -> None:
        self.budget, self.taken = budget, 0

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.taken:
            self.budget.give(self.taken)

    def take(self, size: int) -> bool:
        if not self.budget.take(size):
            return False
        self.taken += size
        return True
