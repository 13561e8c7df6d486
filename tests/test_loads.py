"""The workers' shared table of loads (runtime/loads.py): a new connection is left to a worker
holding fewer, only while that one can take it soon. Pure logic: one process, one table."""

from __future__ import annotations

import os
import time

from nb2container.runtime import loads


def test_a_connection_is_left_to_a_free_worker_holding_fewer() -> None:
    table = loads.Loads()
    first, second = table.assign(set()), table.assign({0})
    assert (first, second) == (0, 1)
    table.publish(first, 3, time.monotonic())
    table.publish(second, 2, 0.0)  # waiting in its poller
    assert table.another_takes(first, 3, grace=0.02)
    assert not table.another_takes(second, 2, grace=0.02)  # the one holding fewest never waits for another
    table.publish(second, 3, 0.0)
    assert not table.another_takes(first, 3, grace=0.02)  # as many: whoever is free takes it


def test_a_worker_busy_past_the_grace_stopped_or_gone_is_not_waited_for() -> None:
    table = loads.Loads()
    mine, other = table.assign(set()), table.assign({0})
    table.publish(other, 0, time.monotonic())
    assert table.another_takes(mine, 4, grace=0.02)  # its call began moments ago: it takes it next
    table.publish(other, 0, time.monotonic() - 1)
    assert not table.another_takes(mine, 4, grace=0.02)  # a slow call (or a stuck worker)
    table.publish(other, 0, 0.0)
    table.release(other)  # stopping, or exited
    table.publish(other, 0, 0.0)  # what it publishes after it let go counts for nothing
    assert not table.another_takes(mine, 4, grace=0.02)
    assert table.assign({mine}) == other  # its slot goes to the next worker forked


def test_a_worker_without_a_slot_takes_what_comes_and_the_table_is_shared_across_fork() -> None:
    table = loads.Loads()
    assert not table.another_takes(None, 10, grace=0.02)
    mine, other = table.assign(set()), table.assign({0})
    pid = os.fork()
    if pid == 0:  # the child is a worker publishing its load
        table.publish(other, 1, 0.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert table.another_takes(mine, 2, grace=0.02)
