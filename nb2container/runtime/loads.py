"""How busy each worker is, in memory the workers share, so a new connection goes to the one
that holds the fewest.

A kept-alive connection stays with the worker that accepted it, and that worker answers its
calls one at a time. Accepted by whichever worker happened to be free, eight connections split
5 to 3 about half the time, and the five wait a call longer each: the p99 of the whole server
is theirs. So the arbiter makes this table before it forks the workers and gives each a slot;
a worker publishes how many connections it holds and since when it has been busy, and leaves a
new connection to another that holds fewer, if that one is free or has been busy only moments
(it takes the connection when its call ends). One that has been busy longer (a slow call, a
stuck worker) is not waited for. Standard library only: it runs in the image beside the server.
"""

from __future__ import annotations

import mmap
import time

SLOTS = 1024  # workers at once; a worker without a slot takes connections as they come
FREE = -1.0


class Loads:
    """Per slot: the connections its worker holds (FREE when no worker has it) and the monotonic
    time its current work began (0 when it waits in its poller). Slot 0 of the table is the
    high-water mark of slots handed out, so a reader looks no further."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, (1 + SLOTS) * 2 * 8)  # anonymous and shared: seen across fork
        self._table = memoryview(self._memory).cast("d")
        for slot in range(SLOTS):
            self._table[2 + 2 * slot] = FREE

    def assign(self, taken: set[int | None]) -> int | None:
        """The arbiter, before forking a worker: the lowest slot no living worker has."""
        slot = next((n for n in range(SLOTS) if n not in taken), None)
        if slot is not None:
            self._table[2 + 2 * slot], self._table[3 + 2 * slot] = 0.0, 0.0
            self._table[0] = max(self._table[0], slot + 1)
        return slot

    def release(self, slot: int | None) -> None:
        """The arbiter, when the slot's worker exited; a stopping worker, for itself."""
        if slot is not None:
            self._table[2 + 2 * slot] = FREE

    def publish(self, slot: int | None, connections: int, busy_since: float) -> None:
        if slot is not None and self._table[2 + 2 * slot] != FREE:
            self._table[2 + 2 * slot], self._table[3 + 2 * slot] = float(connections), busy_since

    def another_takes(self, slot: int | None, connections: int, grace: float) -> bool:
        """Whether another worker holding fewer connections will take a new one: it waits in
        its poller, or its current work began less than ``grace`` seconds ago."""
        if slot is None:
            return False
        now = time.monotonic()
        table = self._table
        for other in range(int(table[0])):
            if other == slot:
                continue
            held, busy_since = table[2 + 2 * other], table[3 + 2 * other]
            if held != FREE and held < connections and (not busy_since or now - busy_since < grace):
                return True
        return False
