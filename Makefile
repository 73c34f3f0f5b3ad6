# The two commands a user needs: `make run` and `make test`. Everything they need is installed on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install sandbox-deps system-deps run test lint bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# bubblewrap, the sandbox local runners run in (`bifrost serve` refuses to start without it; see README).
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null)

# The Debian packages the test suite starts for real: PostgreSQL, and the runners' sandbox.
system-deps: sandbox-deps
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

run: install sandbox-deps
	$(BIN)/bifrost serve

test: install system-deps lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy sdk/bifrost runner_image/bifrost_runner control_plane

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bifrost .pytest_cache .mypy_cache .ruff_cache
