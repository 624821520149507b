"""The queue of commands sent while disconnected: bounded, ordered, refusing when full."""

from __future__ import annotations

import pytest

from tidewire.client.errors import QueueFull
from tidewire.client.outbound import OutboundQueue


def test_fifo_order() -> None:
    queue = OutboundQueue(3)
    for n in range(3):
        queue.put({"n": n})
    assert [queue.popleft(), queue.popleft(), queue.popleft(), queue.popleft()] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
        None,
    ]


def test_full_queue_refuses_and_keeps_what_it_has() -> None:
    queue = OutboundQueue(2)
    queue.put({"n": 0})
    queue.put({"n": 1})
    with pytest.raises(QueueFull, match="message_queue_size=2"):
        queue.put({"n": 2})
    assert len(queue) == 2
    assert queue.popleft() == {"n": 0}


def test_zero_size_refuses_everything() -> None:
    with pytest.raises(QueueFull):
        OutboundQueue(0).put({})


def test_requeue_puts_a_failed_send_first_even_when_full() -> None:
    queue = OutboundQueue(1)
    queue.put({"n": 0})
    first = queue.popleft()
    assert first is not None
    queue.put({"n": 1})
    queue.requeue(first)
    assert [queue.popleft(), queue.popleft()] == [{"n": 0}, {"n": 1}]


def test_remove_by_identity() -> None:
    queue = OutboundQueue(5)
    a, b = {"x": 1}, {"x": 1}
    queue.put(a)
    queue.put(b)
    assert queue.remove(b)
    assert not queue.remove(b)
    assert queue.popleft() is a
    queue.put(a)
    queue.clear()
    assert len(queue) == 0
