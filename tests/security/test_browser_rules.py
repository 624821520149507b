"""The pure rules of security/browser.py: Host and Origin allowlists, JSON content types."""

from __future__ import annotations

from tidewire.security.browser import (
    content_security_policy,
    data_plane_origins,
    default_hosts,
    default_origins,
    host_allowed,
    host_of,
    json_content_type,
    origin_allowed,
)


def test_host_names_are_read_without_ports_and_case() -> None:
    assert [host_of(h) for h in ("[::1]:8766", "LocalHost:80", "a.example", "::1")] == [
        "::1",
        "localhost",
        "a.example",
        "::1",
    ]
    hosts = default_hosts("0.0.0.0")
    assert hosts == frozenset({"127.0.0.1", "localhost", "::1"})
    assert "gw.firm" in default_hosts("gw.firm")
    assert host_allowed("127.0.0.1:8766", hosts) and not host_allowed("evil.example", hosts)
    assert not host_allowed(None, hosts) and not host_allowed("", hosts)
    assert not host_allowed("localhost.evil.example", hosts)
    assert host_allowed("anything", frozenset({"*"}))


def test_origins_are_the_dashboards_own_unless_configured() -> None:
    origins = default_origins(default_hosts("127.0.0.1"), 8766, tls=False)
    assert "http://127.0.0.1:8766" in origins and "http://[::1]:8766" in origins
    assert origin_allowed(None, origins), "programs send no Origin"
    assert origin_allowed("HTTP://LOCALHOST:8766/", origins)
    for hostile in (
        "http://evil.example",
        "null",
        "http://127.0.0.1:9999",
        "https://127.0.0.1:8766",
    ):
        assert not origin_allowed(hostile, origins), hostile
    assert origin_allowed("http://evil.example", frozenset({"*"}))
    assert "https://localhost" in default_origins({"localhost"}, 443, tls=True)


def test_only_json_bodies_and_a_csp_naming_the_data_plane() -> None:
    assert json_content_type("application/json; charset=utf-8")
    for other in (
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        assert not json_content_type(other)
    ws = data_plane_origins("localhost:8766", 8765, tls=False, data_host="127.0.0.1")
    assert ws == ["ws://localhost:8765"]
    policy = content_security_policy(ws)
    assert "script-src 'self'" in policy and "connect-src 'self' ws://localhost:8765" in policy
