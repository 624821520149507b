"""Gateway settings: every limit, port and interval, with defaults.

Read from the environment with the prefix `TIDEWIRE_` (for example
`TIDEWIRE_MAX_SUBSCRIPTIONS=50`), from a TOML file (`config.load_settings`), or passed
explicitly by tests and the CLI. The reference table is docs/settings.md (generated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tidewire.brokers.base import HistoryLimit


class GatewaySettings(BaseSettings):
    """Everything an operator can tune. Each limit is enforced and tested."""

    model_config = SettingsConfigDict(env_prefix="TIDEWIRE_", frozen=True)

    host: str = Field("127.0.0.1", description="interface of the client (data plane) port")
    port: int = Field(8765, ge=0, le=65535, description="client (data plane) port")
    internal_host: str = Field("127.0.0.1", description="interface of the control plane port")
    internal_port: int = Field(8766, ge=0, le=65535, description="control plane port")

    # Connections
    max_connections: int = Field(20_000, ge=1, description="connections per process")
    handshake_timeout: float = Field(5.0, gt=0, description="seconds to finish the upgrade")
    max_subscriptions: int = Field(100, ge=1, description="subscriptions per connection")
    max_filter_values: int = Field(1000, ge=1, description="values in one filter list")
    max_filter_values_per_connection: int = Field(
        10_000, ge=1, description="filter values of all subscriptions of one connection"
    )
    max_list_page: int = Field(
        100, ge=1, description="subscriptions per list_subscriptions answer (paged)"
    )
    max_api_page: int = Field(
        1000, ge=1, description="rows per page of /api/subscriptions and /api/connections"
    )
    max_query_messages: int = Field(
        1000, ge=1, description="messages in one get_snapshot or get_trade_history answer"
    )
    max_queries_in_flight: int = Field(
        16, ge=1, description="get_snapshot / get_trade_history queries answered at once"
    )
    max_message_bytes: int = Field(
        65_536, ge=256, description="largest inbound message; larger gets message_too_large"
    )
    max_frame_bytes: int = Field(
        131_072,
        ge=1024,
        description="hard cap on an inbound frame; larger closes the connection with 1009 "
        "(picows's read buffer of a connection grows to up to twice it and stays)",
    )
    max_inbound_per_second: float = Field(
        50.0, gt=0, description="sustained inbound messages per second per connection"
    )
    inbound_burst: int = Field(
        200, ge=1, description="inbound messages allowed in a burst before 4029 closes"
    )
    max_inbound_frames_per_second: float = Field(
        1000.0,
        gt=0,
        description="sustained inbound frames per second per connection, of any type "
        "(ping, pong, continuation, data); past the burst 4029 closes",
    )
    inbound_frame_burst: int = Field(
        2000, ge=1, description="inbound frames allowed in a burst before 4029 closes"
    )
    max_inbound_bytes_per_second: float = Field(
        4 * 1024 * 1024,
        gt=0,
        description="sustained inbound payload bytes per second per connection, any frame type",
    )
    inbound_bytes_burst: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="inbound payload bytes allowed in a burst before 4029 closes",
    )
    max_reassembly_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="bytes of unfinished fragmented messages held per process; a fragment "
        "past it closes its connection with 1009",
    )
    max_outbox_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="bytes queued for one connection before it is closed with 4008",
    )
    socket_send_buffer: int = Field(
        262_144,
        ge=0,
        description="SO_SNDBUF of client sockets in bytes (0: the kernel's autotuning); "
        "bounds how much a client that stopped reading absorbs before it counts as behind",
    )
    stall_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a client may leave its socket unread before it is closed with 4008",
    )
    max_batch_ms: int = Field(1000, ge=1, description="largest batch_ms a client may ask")
    max_setup_buffer: int = Field(
        10_000,
        ge=1,
        description="live messages one subscription buffers while its snapshot or replay is "
        "fetched; past it the connection is closed with 4008 and recovers",
    )

    # Heartbeats
    heartbeat_interval: float = Field(
        15.0, gt=0, description="seconds of outbound silence before the server sends heartbeat"
    )
    heartbeat_timeout: float = Field(
        45.0, gt=0, description="seconds without any inbound frame before closing with 4010"
    )

    # Publishing
    max_publish_batch: int = Field(1000, ge=1, description="messages in one POST /api/publish")
    max_publish_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="body of one POST /api/publish"
    )
    idempotency_window: float = Field(300.0, gt=0, description="seconds a message_id is remembered")
    max_latest_keys: int = Field(
        100_000,
        ge=1,
        description="latest values (snapshot keys) kept per stream, about 1.1 KB each; past "
        "it the key updated least recently is forgotten until its next message",
    )
    history_max_messages: int = Field(
        100_000,
        ge=1,
        description="messages of history kept per reliable stream (about 1.1 KB each in the "
        "memory broker); a client away for fewer recovers exactly",
    )
    history_max_age: float = Field(3600.0, gt=0, description="seconds of history kept")
    history_overrides: dict[str, HistoryLimitSetting] = Field(
        default_factory=dict, description="per-stream history limits, by stream name"
    )
    anonymous_roles: frozenset[str] = Field(
        frozenset({"subscriber"}),
        description="roles of every connection while authentication is off (no key "
        "configured): subscriber, publisher",
    )
    max_publish_rate: float = Field(
        5000.0, gt=0, description="messages per second one publisher may publish (429 past it)"
    )
    publish_burst: int = Field(
        10_000, ge=1, description="messages a publisher may publish at once before the rate applies"
    )

    # Authentication (README "Securing a deployment"): on as soon as a key is configured.
    jwt_secret: SecretStr | None = Field(
        None, description="HMAC key for HS256/384/512 tokens (at least 32 bytes)"
    )
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key for RS256/384/512 or ES256/384/512 tokens"
    )
    jwt_jwks_file: Path | None = Field(
        None, description="JWKS file (RSA and EC public keys); the token's `kid` picks the key"
    )
    jwt_algorithms: list[str] | None = Field(
        None,
        description="accepted `alg` values; default: the family of each configured key "
        "(HS256 for a secret, RS256 or ES256 for a public key, the JWKS keys' algorithms)",
    )
    jwt_audience: str | None = Field(None, description="required `aud` when set")
    jwt_issuer: str | None = Field(None, description="required `iss` when set")
    jwt_leeway: float = Field(
        10.0, ge=0, le=300, description="seconds of clock skew allowed on exp, nbf and iat"
    )
    jwt_denylist: frozenset[str] = Field(
        frozenset(), description="`jti` values refused (revoked tokens)"
    )
    jwt_denylist_file: Path | None = Field(
        None, description="file of revoked `jti` values, one per line, re-read when it changes"
    )
    auth_timeout: float = Field(
        5.0, gt=0, description="seconds a connection without a token has to send `auth`"
    )
    auth_query_token: bool = Field(
        False, description="accept ?token= on the WebSocket URL (URLs end up in proxy logs)"
    )

    # Browser-facing defences
    allowed_origins: list[str] | None = Field(
        None,
        description="Origins allowed to open WebSocket connections ('*': any); default: the "
        "dashboard's own origins (allowed_hosts on the control port); no Origin is always allowed",
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header values the control plane serves (DNS rebinding); default: "
        "127.0.0.1, localhost, ::1 and internal_host",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the control plane (CORS)"
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: TLS on both ports")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")

    # Limits tied to identity (per gateway process)
    max_connections_per_user: int = Field(
        200, ge=1, description="connections of one user (token `sub`); past it: close 4009"
    )
    max_unauthenticated_connections: int = Field(
        1000,
        ge=1,
        description="connections without a token yet (waiting for `auth`) per process; past "
        "it a handshake without a token is answered 503",
    )
    max_connections_per_address: int = Field(
        10_000, ge=1, description="connections from one remote IP address; past it: close 4009"
    )
    max_subscriptions_per_user: int = Field(
        1000, ge=1, description="subscriptions of one user across its connections"
    )

    # Broker
    broker_url: str = Field(
        "memory://",
        description="memory:// (one process) or redis://host:port/db (several nodes)",
    )
    redis_prefix: str = Field("tw", min_length=1, description="prefix of every Redis key")
    readiness_timeout: float = Field(
        2.0, gt=0, description="seconds a /readyz probe may take to come back through the broker"
    )
    reuse_port: bool = Field(
        False, description="SO_REUSEPORT on the client port (set by --workers)"
    )
    health_interval: float = Field(
        10.0,
        ge=0,
        description="seconds between the gateway's own system_health messages "
        "(component gateway:<node>); 0: none",
    )
    node_name: str = Field(
        "",
        description="names this node in its system_health component; empty: "
        "<hostname>:<client port>",
    )

    # Demo
    simulator: bool = Field(False, description="run the built-in market simulator (demo data)")
    simulator_rate: float = Field(20.0, gt=0, description="simulator ticks per second per symbol")

    # NautilusTrader source (tidewire.sources.nautilus)
    nautilus_url: str | None = Field(
        None, description="Redis that NautilusTrader's message bus writes to; set: read it"
    )
    nautilus_streams: list[str] = Field(
        default_factory=lambda: ["trader-*"],
        description="Nautilus stream keys, or glob patterns matched against stream keys",
    )
    nautilus_offsets_key: str = Field(
        "tidewire:nautilus:offsets",
        description="Redis hash storing the last entry read per stream (resume); empty: none",
    )
    nautilus_portfolio_field: Literal["account_id", "strategy_id", "trader_id"] = Field(
        "account_id", description="event field that names the portfolio"
    )
    nautilus_start_from: Literal["earliest", "latest"] = Field(
        "earliest", description="where to start in a stream with no stored position"
    )

    @field_validator(
        "jwt_secret",
        "jwt_public_key_file",
        "jwt_jwks_file",
        "jwt_denylist_file",
        "tls_cert_file",
        "tls_key_file",
        "jwt_audience",
        "jwt_issuer",
        mode="before",
    )
    @classmethod
    def _empty_is_an_error(cls, value: object) -> object:
        # TIDEWIRE_JWT_SECRET= (a template that rendered nothing) must not run the gateway
        # open, nor with an empty key: unset the variable to run without authentication.
        if value == "":
            raise ValueError("is set but empty; unset it to leave it off")
        return value

    @field_validator("jwt_algorithms", mode="after")
    @classmethod
    def _no_alg_none(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(alg.lower() == "none" for alg in value):
            raise ValueError("the 'none' algorithm cannot be accepted")
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether connections and API calls need a token (a key is configured)."""
        return (
            self.jwt_secret is not None
            or self.jwt_public_key_file is not None
            or self.jwt_jwks_file is not None
        )

    def history_limit(self, stream: str) -> HistoryLimit:
        override = self.history_overrides.get(stream)
        if override is not None:
            return HistoryLimit(override.max_messages, override.max_age_seconds)
        return HistoryLimit(self.history_max_messages, self.history_max_age)


class HistoryLimitSetting(BaseSettings):
    max_messages: int = Field(10_000, ge=1)
    max_age_seconds: float = Field(3600.0, gt=0)


GatewaySettings.model_rebuild()
