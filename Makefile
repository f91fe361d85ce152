# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
# The oldest Python we support (requires-python); tools/find-python.sh fails loudly if it is missing.
PYTHON ?= $(shell tools/find-python.sh 3.11)
# The other versions we claim: the whole suite runs on each of them too (tools/test-versions.sh).
OTHER_PYTHONS := 3.12 3.13
VENV := .venv
BIN := $(VENV)/bin
STAMP_DEMO := $(VENV)/.installed-demo
STAMP_DEV := $(VENV)/.installed-dev
# What the test environments install (the main one and each of OTHER_PYTHONS').
DEV_EXTRAS := dev,openai,anthropic,google,server

.PHONY: demo test lint typecheck readme-typecheck unit unit-min unit-versions postgres-binaries js-test web chromium bench bench-instrument bench-instructions bench-dashboard clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11 (see tools/find-python.sh)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[openai,anthropic]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(DEV_EXTRAS)]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(BIN)/llmledger demo

# The dashboard's front end (web/: Vite + TypeScript + Chart.js), built INTO the Python package
# (src/llmledger/dashboard/static/, checked in and shipped in the wheel: neither CI nor its users
# need Node). Run after editing web/ and commit static/; tests/test_dashboard_static.py checks that
# the bundle matches the sources (tools/web_sources.py). Needs node + npm.
web: $(STAMP_DEV)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build
	$(BIN)/python tools/web_sources.py --write

# The dashboard's end-to-end tests drive Debian's Chromium (no browser download): install it if absent.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: $(STAMP_DEV) readme-typecheck
	$(BIN)/mypy --strict src

# The README's Python code type-checks under mypy --strict, as a user's would.
readme-typecheck: $(STAMP_DEV)
	$(BIN)/python tools/readme_code.py .mypy_cache/readme README.md
	$(BIN)/mypy --strict --config-file tools/mypy-snippets.ini .mypy_cache/readme

# The suite starts its own PostgreSQL server (tests/pg.py) from Debian's binaries: install them if absent.
postgres-binaries:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

unit: $(STAMP_DEV) postgres-binaries chromium
	$(BIN)/pytest -q

# The suite on every other Python version we claim, in parallel (one virtualenv each).
unit-versions: postgres-binaries
	EXTRAS=$(DEV_EXTRAS) tools/test-versions.sh $(OTHER_PYTHONS)

# The instrumentation tests again, against the oldest SDK releases we support.
VENV_MIN := .venv-min
MIN_SDKS := openai==3.0.0 anthropic==2.0.0 google-genai==3.0.0
$(VENV_MIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11 (see tools/find-python.sh)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/pip install --quiet -e '.[dev]' $(MIN_SDKS)
	touch $@

unit-min: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/pytest -q -p no:cacheprovider tests/test_instrument_openai.py tests/test_instrument_anthropic.py \
		tests/test_instrument_google.py tests/test_instrument_core.py

# The JavaScript client (js/, TypeScript strict) against a real gateway process: npm installs its
# three development packages (openai, typescript, @types/node) once.
js/node_modules/.installed: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js-test: $(STAMP_DEV) js/node_modules/.installed
	cd js && npx tsc -p tsconfig.json && LLMLEDGER_PYTHON=$(CURDIR)/$(BIN)/python node --test test/

test: lint typecheck unit unit-min unit-versions js-test

bench: $(STAMP_DEV)
	$(BIN)/python bench/bench_track.py
	$(BIN)/python bench/bench_writer.py
	$(BIN)/python bench/bench_hook.py

# The instrumentation benchmark compares with other tools; they live only in this environment.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -e '.[openai]' pyperf requests token-limit==0.1.10 tokenr==0.1.3
	touch $@

bench-instrument: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/bench_instrument.py $(BENCH_ARGS)

# 10M events in a SQLite ledger; p95 of each dashboard API call, overview page interactive time.
bench-dashboard: $(STAMP_DEV) chromium
	$(BIN)/python bench/bench_dashboard.py $(BENCH_ARGS)

bench-instructions: $(STAMP_DEV)
	command -v valgrind >/dev/null || apt-get install -y valgrind
	$(BIN)/python bench/instructions.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(VENV_MIN) .venv-py3.* .mypy_cache .pytest_cache .ruff_cache build dist \
		web/node_modules
