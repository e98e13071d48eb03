# Two commands: `make run` and `make test`. Both install into .venv when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-packages run run-live test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use: strace (the host-crash test traces Valkey's writes and fsyncs of its AOF)
# and chromium (the status page's browser test drives it through Playwright; no browser download)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@command -v strace >/dev/null 2>&1 || { \
		echo "installing strace (Debian package) for the host-crash test"; \
		$(SUDO) apt-get install -y -q strace >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q strace >/dev/null; }; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (Debian package) for the status page's browser test"; \
		$(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

run: $(STAMP)
	$(BIN)/honcho -f Procfile start

# Real Discord: Procfile.live has no simulator. The config is MJBROKER_CONFIG (default config.yaml);
# a file that still points Discord at the demo's simulator is refused.
MJBROKER_CONFIG ?= config.yaml
run-live: $(STAMP)
	@! grep -Eq '^[^#]*(127\.0\.0\.1|localhost):8081' $(MJBROKER_CONFIG) || { \
		echo "$(MJBROKER_CONFIG) still points at the simulator (127.0.0.1:8081): see README, Going live on Discord"; \
		exit 1; }
	MJBROKER_CONFIG=$(MJBROKER_CONFIG) $(BIN)/honcho -f Procfile.live start

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-packages
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

# `make bench BASELINE=<git ref>` also runs the api and pipeline benches against that ref's product
# (a temporary git worktree), alternating with this tree, and prints both sides and their ratios.
BASELINE ?=

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(BASELINE),--baseline $(BASELINE))

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
