"""Where the gateway's settings come from, and their reference.

Precedence, highest first: command-line flags, `TIDEWIRE_*` environment variables, the TOML
file given with `--config`, the defaults of `settings.GatewaySettings`. A key of the file
that is not a setting is an error naming it (a typo must not leave a limit at its default
silently). `effective_settings` is what `tidewire config` prints (secrets masked);
`settings_reference` renders docs/settings.md, which tests/test_config.py keeps current.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from tidewire.settings import GatewaySettings

__all__ = [
    "REFERENCE_PATH",
    "ConfigError",
    "effective_settings",
    "load_settings",
    "read_config_file",
    "settings_reference",
]

REFERENCE_PATH: Final = "docs/settings.md"
MASK: Final = "********"


class ConfigError(ValueError):
    """The settings file cannot be used: unreadable, not TOML, or an unknown key."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML file, checked against the known names."""
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - set(GatewaySettings.model_fields))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"{path}: unknown setting {names} (see {REFERENCE_PATH})")
    return values


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> GatewaySettings:
    """The effective settings: `overrides` (flags) over the environment over the file over
    the defaults. Raises ConfigError for the file, pydantic's ValidationError for values."""
    from_file = read_config_file(config_file) if config_file is not None else {}
    environment = GatewaySettings()  # the environment and the defaults only
    from_environment = {name: getattr(environment, name) for name in environment.model_fields_set}
    return GatewaySettings(**{**from_file, **from_environment, **overrides})


def effective_settings(settings: GatewaySettings) -> dict[str, Any]:
    """Every setting with its value as TOML would spell it; secrets masked."""
    out: dict[str, Any] = {}
    for name in GatewaySettings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = MASK
        out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


def settings_reference() -> str:
    """docs/settings.md: every setting with its type, default, variable and description."""
    lines = [
        "# Settings",
        "",
        "Generated from `tidewire.settings.GatewaySettings` by `make schema` (`tidewire config",
        "--reference`); tests/test_config.py fails while it is stale. Every setting can be given,",
        "highest precedence first, as a `tidewire serve` flag where one exists, as the",
        "environment variable shown, as a key of the TOML file of `tidewire serve --config",
        "tidewire.toml`, or left at its default. `tidewire config` prints the effective values",
        "(secrets masked). An unknown key in the file is an error naming it.",
        "",
        "| setting | type | default | variable | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in GatewaySettings.model_fields.items():
        lines.append(
            f"| `{name}` | {_type(field)} | {_default(field)} | `TIDEWIRE_{name.upper()}` "
            f"| {(field.description or '').replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def _type(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("pydantic.types.", "").replace("tidewire.settings.", "")
    text = text.replace("<class '", "").replace("'>", "")
    return f"`{text}`".replace("|", "or")


def _default(field: FieldInfo) -> str:
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is None:
        return "none"
    return f"`{json.dumps(_plain(value))}`".replace("|", "/")
