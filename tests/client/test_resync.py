"""Resync markers and the calling of resync handlers."""

from __future__ import annotations

from typing import Any

import pytest

from tidewire.client.resync import (
    NOT_RECOVERED,
    OVERFLOW,
    call_resync_handlers,
    is_resync,
    resync_marker,
)
from tidewire.client.subscription import Subscription
from tidewire.protocol.messages import StreamPosition


class Owner:
    async def unsubscribe(self, subscription_id: str) -> None:
        raise AssertionError("not used")


def make() -> Subscription:
    return Subscription(
        Owner(),  # type: ignore[arg-type]
        subscription_id="s1",
        stream="order_updates",
        filters={},
        rate_limit=None,
        snapshot=None,
        queue_size=10,
        reliable=True,
    )


def test_marker_fields() -> None:
    marker = resync_marker(
        NOT_RECOVERED,
        subscription_id="s1",
        stream="order_updates",
        position=StreamPosition("e1", 4),
        resume_position=StreamPosition("e2", 0),
    )
    assert marker == {
        "type": "resync",
        "reason": "not_recovered",
        "subscription_id": "s1",
        "stream": "order_updates",
        "position": {"epoch": "e1", "seq": 4},
        "resume_position": {"epoch": "e2", "seq": 0},
        "snapshot": False,
        "loss": True,
        "dropped": None,
    }
    assert is_resync(marker)
    assert not is_resync({"type": "order_update", "seq": 1})
    overflow = resync_marker(OVERFLOW, subscription_id="s", stream="x", position=None, dropped=2)
    assert overflow["position"] is None and overflow["dropped"] == 2
    # Nothing that looks like a data message's place in a stream.
    assert not {"seq", "epoch", "key", "data"} & set(marker)


async def test_handlers_get_copies_sync_and_async_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    subscription = make()
    marker = resync_marker(NOT_RECOVERED, subscription_id="s1", stream="x", position=None)
    calls: list[tuple[str, Subscription, dict[str, Any]]] = []

    def plain(sub: Subscription, info: dict[str, Any]) -> None:
        calls.append(("plain", sub, info))
        info["reason"] = "scribbled"  # a copy: nobody else sees this

    async def coroutine(sub: Subscription, info: dict[str, Any]) -> None:
        calls.append(("coroutine", sub, info))

    def failing(sub: Subscription, info: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    with caplog.at_level("ERROR", logger="tidewire.client"):
        await call_resync_handlers([plain, failing, coroutine], subscription, marker)
    assert [name for name, _, _ in calls] == ["plain", "coroutine"]
    assert all(sub is subscription for _, sub, _ in calls)
    assert calls[1][2] == marker and marker["reason"] == "not_recovered"
    assert "resync handler" in caplog.text
