"""client/tokens.py: the refresh schedule (shared JSON vectors) and token providers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidewire.client.tokens import refresh_delay, refresh_retry_delay, resolve_token, seconds_until

VECTORS = Path(__file__).parents[1] / "vectors" / "token_refresh.json"


@pytest.mark.parametrize("case", json.loads(VECTORS.read_text())["cases"])
def test_refresh_schedule_follows_the_shared_vectors(case: dict[str, float]) -> None:
    assert refresh_delay(case["seconds_left"]) == pytest.approx(case["delay"])


@pytest.mark.parametrize("case", json.loads(VECTORS.read_text())["retries"])
def test_refresh_retries_follow_the_shared_vectors(case: dict[str, float]) -> None:
    assert refresh_retry_delay(case["seconds_left"]) == pytest.approx(case["delay"])


async def test_fixed_tokens_and_providers_of_both_kinds() -> None:
    async def async_provider() -> str:
        return "from-async"

    assert await resolve_token(None) is None
    assert await resolve_token("fixed") == "fixed"
    assert await resolve_token(lambda: "from-sync") == "from-sync"
    assert await resolve_token(async_provider) == "from-async"
    with pytest.raises(TypeError):
        await resolve_token(lambda: "")


def test_seconds_until_an_iso_expiry() -> None:
    assert seconds_until("1970-01-01T00:01:40Z", 40.0) == 60.0
    assert seconds_until(None, 0.0) is None
    assert seconds_until("not a time", 0.0) is None
