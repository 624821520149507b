"""Settings from flags, the environment and a TOML file (tidewire/config.py), `tidewire
config`, and the generated reference docs/settings.md."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tidewire.config import (
    MASK,
    REFERENCE_PATH,
    ConfigError,
    effective_settings,
    load_settings,
    settings_reference,
)
from tidewire.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tidewire.toml"
    path.write_text(text)
    return path


def test_flags_over_environment_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "max_subscriptions = 7\nmax_message_bytes = 4096\nheartbeat_interval = 3.5\n"
        "[history_overrides.trade_updates]\nmax_messages = 50\nmax_age_seconds = 60\n",
    )
    monkeypatch.setenv("TIDEWIRE_MAX_MESSAGE_BYTES", "2048")
    monkeypatch.setenv("TIDEWIRE_STALL_TIMEOUT", "9")
    settings = load_settings(path, heartbeat_interval=1.0)
    assert settings.max_subscriptions == 7  # file
    assert settings.max_message_bytes == 2048  # environment over file
    assert settings.heartbeat_interval == 1.0  # flag over file
    assert settings.stall_timeout == 9.0  # environment over default
    assert settings.max_outbox_bytes == GatewaySettings().max_outbox_bytes  # default
    assert settings.history_limit("trade_updates").max_messages == 50


def test_an_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "max_subscriptions = 7\nmax_subscription = 8\n")
    with pytest.raises(ConfigError, match="'max_subscription'"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "message"), [("max_subscriptions = [", "not valid TOML"), (None, "cannot read")]
)
def test_an_unusable_file_is_an_error(tmp_path: Path, text: str | None, message: str) -> None:
    path = write(tmp_path, text) if text is not None else tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_a_bad_value_in_the_file_is_refused_like_one_in_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_subscriptions"):
        load_settings(write(tmp_path, "max_subscriptions = 0\n"))


def test_effective_settings_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEWIRE_JWT_SECRET", "s" * 40)
    shown = effective_settings(load_settings())
    assert shown["jwt_secret"] == MASK
    assert "s" * 40 not in repr(shown)
    assert set(shown) == set(GatewaySettings.model_fields)


def test_the_reference_is_current_and_names_every_setting() -> None:
    committed = (REPO / REFERENCE_PATH).read_text(encoding="utf-8")
    assert committed == settings_reference(), "stale: run `make schema`"
    for name, field in GatewaySettings.model_fields.items():
        assert f"| `{name}` |" in committed
        assert field.description, f"{name} has no description"


async def test_tidewire_config_prints_the_effective_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "max_subscriptions = 7\n")
    env = {**os.environ, "TIDEWIRE_JWT_SECRET": "k" * 40}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidewire", "config", "--config", str(path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    lines = out.decode().splitlines()
    assert "max_subscriptions = 7" in lines
    assert f'jwt_secret = "{MASK}"' in lines
    assert "k" * 40 not in out.decode()


async def test_tidewire_config_names_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "max_subscription = 7\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidewire", "config", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "unknown setting 'max_subscription'" in err.decode()
