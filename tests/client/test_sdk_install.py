"""The Python SDK is the base install: it needs none of the gateway's dependencies.

`pip install tidewire` gives tidewire.client, tidewire.protocol and the client commands of
the `tidewire` CLI; the gateway's packages are the `server` extra (pyproject.toml). Checked
offline in a fresh interpreter that refuses to import any of the server's packages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Import names of the `server` extra's distributions and what they pull in. Not pydantic:
# typer (the CLI, a base dependency) needs it since 0.2x.
SERVER_MODULES = [
    "picows",
    "litestar",
    "uvicorn",
    "redis",
    "pydantic_settings",
    "jwt",
    "cryptography",
]

WITHOUT_SERVER = """
import importlib.abc, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (server dependency)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
import tidewire.client, tidewire.protocol
for package in (tidewire.client, tidewire.protocol):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        __import__(module.name)
from tidewire.client import TidewireClient
from tidewire.cli import main
sys.argv = ["tidewire", "tail", "--help"]
main()
"""


def test_the_sdk_and_tidewire_tail_import_without_the_server_packages(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER, ",".join(SERVER_MODULES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "tail" in done.stdout.lower()


def test_the_base_dependencies_are_the_clients_and_the_server_is_an_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        found = set()
        for requirement in requirements:
            match = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert match is not None, requirement
            found.add(match.group().lower().replace("_", "-"))
        return found

    base = names(project["dependencies"])
    server = names(project["optional-dependencies"]["server"])
    assert base == {"msgspec", "websockets", "typer", "rich", "httpx"}
    assert {"picows", "litestar", "uvicorn", "pydantic-settings", "redis", "pyjwt"} <= server
    assert "tidewire[server]" in project["optional-dependencies"]["dev"]


def test_serve_without_the_server_packages_says_what_to_install(tmp_path: Path) -> None:
    script = WITHOUT_SERVER.replace('["tidewire", "tail", "--help"]', '["tidewire", "serve"]')
    done = subprocess.run(
        [sys.executable, "-c", script, ",".join(SERVER_MODULES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "tidewire[server]"' in done.stderr
    assert "Traceback" not in done.stderr
