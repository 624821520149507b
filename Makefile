# Tidewire: `make demo` runs the gateway with the market simulator; `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NAUTILUS_STAMP := $(VENV)/.nautilus-installed

TSC := clients/typescript/node_modules/.bin/tsc
# The browser tests drive Debian's Chromium: Playwright's own browser download cannot work
# on an offline machine (tests/dashboard/conftest.py points Playwright at this binary).
CHROMIUM := /usr/bin/chromium

.PHONY: demo demo-nautilus check test lint typecheck pytest fuzz bench schema screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[server,dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	@echo "Dashboard: http://127.0.0.1:8766/   API: http://127.0.0.1:8766/docs   WebSocket: ws://127.0.0.1:8765/ws"
	@echo "Tokens: off unless TIDEWIRE_JWT_SECRET (or a public key) is set; see README, Securing a deployment"
	$(BIN)/tidewire serve --demo

# NautilusTrader (optional extra, ~680 MB): the integration test and demo-nautilus need it.
$(NAUTILUS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e ".[nautilus]"
	touch $(NAUTILUS_STAMP)

# A private redis-server, the gateway reading it, and a live NautilusTrader node writing to it.
demo-nautilus: $(STAMP) $(NAUTILUS_STAMP)
	$(BIN)/python examples/nautilus_demo.py

# The fast checks, under a minute: lint, types and the unit tests, i.e. none that starts a
# gateway (marker `gateway`, set from the fixtures), a browser, NautilusTrader, npm/node or
# redis-server, nor the fuzzers, the CLI's subprocesses and the long simulator runs.
check: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider $(CHECK_PYTEST)

CHECK_PYTEST := -m "not gateway and not browser and not redis and not slow and not nautilus" \
	--ignore=tests/dashboard --ignore=tests/nautilus --ignore=tests/fuzz \
	--ignore=tests/security/test_fuzz.py --ignore=tests/test_cli.py \
	--deselect tests/protocol/test_schema.py::test_declarations_type_check_with_tsc \
	--deselect tests/sources/test_canonical.py::test_the_simulator_speaks_canonical \
	--deselect tests/protocol/test_canonical_schema.py::test_every_simulator_message_validates

test: lint typecheck pytest

LINTED := src tests $(wildcard bench checker examples)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(NAUTILUS_STAMP) $(TSC) $(CHROMIUM)
	$(BIN)/pytest -q --cov --cov-report=term:skip-covered

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The seeded fuzz of the frame parser and the command decoder for about an hour (1800 s per
# file; CI runs it for about a minute). Replay a failure: see tests/fuzz/test_fuzz_frames.py.
fuzz: $(STAMP)
	TIDEWIRE_FUZZ_SECONDS=$${TIDEWIRE_FUZZ_SECONDS:-1800} $(BIN)/pytest -q -p no:cacheprovider --timeout 0 tests/fuzz

# Pictures of every dashboard panel for the README, on live simulated data.
screenshots: $(STAMP) $(CHROMIUM)
	TIDEWIRE_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/dashboard/test_screenshots.py

# TypeScript compiler (pinned in clients/typescript/package.json) that type-checks the
# generated declarations; npm comes with Node.js (apt-get install nodejs npm).
$(TSC): clients/typescript/package.json
	npm install --prefix clients/typescript --no-audit --no-fund --loglevel=error
	touch $(TSC)

bench: $(STAMP)
	$(BIN)/python -m bench.fanout --repeat 3
	$(BIN)/python -m bench.idle_memory

schema: $(STAMP)
	$(BIN)/tidewire schema --typescript > clients/typescript/tidewire-protocol.d.ts
	cp clients/typescript/tidewire-protocol.d.ts src/tidewire/dashboard/static/
	$(BIN)/tidewire schema --javascript > src/tidewire/dashboard/static/client/catalogue.js
	$(BIN)/tidewire config --reference > docs/settings.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
