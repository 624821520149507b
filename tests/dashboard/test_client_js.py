"""The JavaScript client and the dashboard's static files, without a browser.

* the client's unit tests (`tests/dashboard/js/*.test.mjs`) pass under `node --test`;
* the client type-checks with `tsc --checkJs` against the generated protocol declarations,
  and the copy of those declarations served next to it is the generated file;
* its copy of the stream catalogue (keys, key fallbacks, snapshot units, filters) and close
  codes says what the Python protocol says;
* vendored uPlot is the pinned npm release;
* the control plane serves the dashboard and its modules with a JavaScript MIME type.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from support import IN_CI, require_tool
from tidewire.dashboard import STATIC_DIR
from tidewire.protocol.errors import BACKOFF_CLOSE_CODES, RECONNECT_CLOSE_CODES
from tidewire.protocol.streams import KEY_FILTER_OF_FIELD, STREAM_ALIASES, STREAMS
from tidewire.server.app import Gateway

REPO = Path(__file__).resolve().parents[2]
JS_TESTS = Path(__file__).parent / "js"
CLIENT = STATIC_DIR / "tidewire-client.js"
GENERATED_DTS = REPO / "clients" / "typescript" / "tidewire-protocol.d.ts"


def node() -> str:
    return require_tool("node", "apt-get install -y nodejs")


def run_node(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_client_unit_tests_pass_in_node() -> None:
    result = run_node("--test", *sorted(str(p) for p in JS_TESTS.glob("*.test.mjs")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout


def test_served_declarations_are_the_generated_ones() -> None:
    served = (STATIC_DIR / "tidewire-protocol.d.ts").read_text(encoding="utf-8")
    assert served == GENERATED_DTS.read_text(encoding="utf-8"), (
        "src/tidewire/dashboard/static/tidewire-protocol.d.ts is out of date: copy "
        "clients/typescript/tidewire-protocol.d.ts over it"
    )


def _find_tsc() -> str | None:
    configured = os.environ.get("TIDEWIRE_TSC")
    if configured:
        return configured
    candidate = REPO / "clients" / "typescript" / "node_modules" / ".bin" / "tsc"
    return str(candidate) if candidate.is_file() else shutil.which("tsc")


def test_client_type_checks_against_the_protocol_declarations() -> None:
    tsc = _find_tsc()
    if tsc is None:
        message = (
            "no TypeScript compiler: `make test` installs it (npm install --prefix "
            "clients/typescript); or set TIDEWIRE_TSC to a tsc binary"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [
            tsc,
            "--noEmit",
            "--allowJs",
            "--checkJs",
            "--strict",
            "--exactOptionalPropertyTypes",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2022,dom",
            "tidewire-client.js",
        ],
        cwd=STATIC_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


_DUMP = """
const m = await import(process.argv[1]);
const c = await import(process.argv[2]);
console.log(JSON.stringify({
  streams: m.STREAMS, aliases: m.STREAM_ALIASES, keyFilters: m.KEY_FILTER_OF_FIELD,
  reconnect: [...c.RECONNECT_CLOSE_CODES], backoff: [...c.BACKOFF_CLOSE_CODES],
}));
"""


def test_catalogue_and_close_codes_match_the_python_protocol() -> None:
    result = run_node(
        "--input-type=module",
        "-e",
        _DUMP,
        (STATIC_DIR / "client" / "streams.js").as_uri(),
        (STATIC_DIR / "client" / "closecodes.js").as_uri(),
    )
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)
    expected = {
        name: {
            "keyField": spec.key_field,
            "keyFallback": spec.key_fallback,
            "reliable": spec.reliable,
            "keepsLastValues": spec.keeps_last_values,
            "snapshotFields": list(spec.snapshot_fields),
            "filters": sorted(spec.filters),
        }
        for name, spec in STREAMS.items()
    }
    assert {n: {**s, "filters": sorted(s["filters"])} for n, s in js["streams"].items()} == expected
    assert js["keyFilters"] == KEY_FILTER_OF_FIELD
    assert js["aliases"] == STREAM_ALIASES
    assert set(js["reconnect"]) == set(RECONNECT_CLOSE_CODES)
    assert set(js["backoff"]) == set(BACKOFF_CLOSE_CODES)


def test_vendored_uplot_is_the_pinned_release() -> None:
    folder = STATIC_DIR / "vendor" / "uplot"
    table = dict(
        re.findall(r"^\| (\S+) \| ([0-9a-f]{64}) \|$", (folder / "README.md").read_text(), re.M)
    )
    assert set(table) == {"uPlot.esm.js", "uPlot.min.css", "LICENSE"}
    for name, digest in table.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_every_module_import_resolves() -> None:
    """No build step: each relative import of a module must be a file that is served."""
    pattern = re.compile(r"""^\s*(?:import|export)\b[^'"]*?from\s+["'](\.[^"']+)["']""", re.M)
    modules = [p for p in STATIC_DIR.rglob("*.js") if "vendor" not in p.parts]
    assert len(modules) > 10
    for module in modules:
        for target in pattern.findall(module.read_text(encoding="utf-8")):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_static_files_need_nothing_the_policy_refuses() -> None:
    """The control plane's CSP has no 'unsafe-inline' nor 'unsafe-eval': no inline script,
    handler or style attribute in the HTML, none written as HTML by a module, no eval.
    (Styles set through CSSOM, `el.style.width = ...`, are allowed.)"""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\s(style|on[a-z]+)=", html), "inline style or event handler"
    modules = [p for p in STATIC_DIR.rglob("*.js") if "vendor" not in p.parts]
    for module in modules:
        text = module.read_text(encoding="utf-8")
        assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]", text), module.name
        assert not re.search(r"\sstyle=|\bstyle:\s", text), f"{module.name}: inline style"


async def test_control_plane_serves_the_dashboard(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=5) as http:
        index = await http.get("/")
        assert index.status_code == 200
        assert '<script type="module" src="app.js">' in index.text
        for path in (
            "/app.js",
            "/tidewire-client.js",
            "/client/dedupe.js",
            "/vendor/uplot/uPlot.esm.js",
        ):
            response = await http.get(path)
            assert response.status_code == 200, path
            # Browsers refuse ES modules served with another MIME type.
            assert "javascript" in response.headers["content-type"], path
        css = await http.get("/vendor/uplot/uPlot.min.css")
        assert css.headers["content-type"].startswith("text/css")
        config = (await http.get("/api/config")).json()
        assert config["ws_url"] == f"ws://127.0.0.1:{gateway.port}/ws"
        assert config["auth_required"] is False  # the dashboard shows no token field
