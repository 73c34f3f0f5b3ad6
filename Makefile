# The two commands a user needs: `make run` and `make test`. Everything they need is installed on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install lock sandbox-deps system-deps run test lint bench clean

# The whole uv workspace (server, runner, SDK, dev tools) exactly as uv.lock pins it. uv itself comes from PyPI
# the first time; from then on it is the version the lock pins, in the same environment.
$(INSTALLED): pyproject.toml sdk/pyproject.toml cli/pyproject.toml runner_image/pyproject.toml devtools/pyproject.toml uv.lock
	test -x $(BIN)/uv || ($(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet 'uv>=0.13')
	$(BIN)/uv sync --quiet --locked
	touch $(INSTALLED)

install: $(INSTALLED)

# After a change of dependencies in a pyproject.toml: pins them anew in uv.lock, to commit with the change.
lock:
	$(BIN)/uv lock

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
	$(BIN)/mypy sdk/bifrost cli/bifrost_cli runner_image/bifrost_runner control_plane devtools/bifrost_devtools

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bifrost .pytest_cache .mypy_cache .ruff_cache
