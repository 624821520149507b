"""tests/vectors/subscriptions.json on the Python SDK's `SubscriptionState` (the JavaScript
client runs the same scenarios in tests/dashboard/js/subscriptions.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidewire.client.tracking import SubscriptionState
from tidewire.client.wire import position_of
from tidewire.protocol.messages import StreamPosition
from tidewire.protocol.streams import STREAMS

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "subscriptions.json").read_text())
SCENARIOS = [pytest.param(s, id=s["name"]) for s in VECTORS["scenarios"]]
MARKER_FIELDS = ("reason", "position", "resume_position", "snapshot", "loss")


def wire(position: StreamPosition | None) -> dict[str, Any] | None:
    return None if position is None else {"epoch": position.epoch, "seq": position.seq}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_python_sdk_follows_the_scenario(scenario: dict[str, Any]) -> None:
    stream = scenario["stream"]
    since = position_of(scenario["since"])
    state = SubscriptionState(
        subscription_id="s1",
        stream=stream,
        filters={},
        rate_limit=None,
        snapshot=scenario["snapshot"],
        reliable=STREAMS[stream].reliable,
        since=since,
    )
    for number, step in enumerate(scenario["steps"]):
        where = f"step {number}: {step}"
        if "subscribe" in step:
            command = state.command(f"m-{number}")
            assert command.get("since") == step["subscribe"]["since"], where
        elif "confirmed" in step:
            reply = {"type": "subscription_confirmed", "stream": stream, **step["confirmed"]}
            marker = state.on_confirmed(reply)
            if step["marker"] is None:
                assert marker is None, where
            else:
                assert marker is not None, where
                assert {k: marker[k] for k in MARKER_FIELDS} == step["marker"], where
        elif "message" in step:
            message = {"type": "x", "stream": stream, **step["message"]}
            delivered = state.accept(message)
            assert delivered is step["delivered"], where
            position = position_of(message)
            if delivered and position is not None:
                state.advance(position)  # as the handle does once it queued the message
        elif "reply" in step:
            state.settle()
        elif "heartbeat_position" in step:
            position = position_of(step["heartbeat_position"])
            assert position is not None
            state.advance(position)
        elif "disconnected" in step:
            state.on_disconnected()
        else:
            expected = step["expect"]
            actual = {
                "position": wire(state.position),
                "messages_received": state.messages_received,
                "duplicates": state.duplicates,
                "resyncs": state.resyncs,
            }
            assert {k: actual[k] for k in expected} == expected, where
