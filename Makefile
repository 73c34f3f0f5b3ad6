# The two commands a user needs: `make run` and `make test`. Everything they need is installed on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# The web UI (ui/): installed from its lock file, built into ui/dist, whose index.html is the build's stamp: it is
# rebuilt only when a source file or the lock changed.
UI_INSTALLED := ui/node_modules/.package-lock.json
UI_BUILT := ui/dist/index.html
UI_SOURCES := ui/index.html ui/package.json ui/tsconfig.json ui/vite.config.ts \
	$(shell find ui/src ui/public -type f ! -name '*.test.*' 2>/dev/null)

.PHONY: install lock sandbox-deps container-deps system-deps images ui ui-test run test lint bench clean

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

# Podman with runc, and debootstrap: the container tests build the images with them, their Python base image made
# from Debian packages (see devtools/bifrost_devtools/images.py); what podman needs on this kind of machine is in
# tests/containers/containers.conf.
container-deps:
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			podman runc debootstrap >/dev/null)

# The Debian packages the test suite starts for real: PostgreSQL, the runners' sandbox, podman, and the browser the
# web UI's tests drive.
system-deps: sandbox-deps container-deps
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	@test -x /usr/bin/chromium || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

$(UI_INSTALLED): ui/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "The web UI needs Node.js 20.19 or newer and npm." >&2; exit 1; }
	cd ui && npm ci --no-audit --no-fund
	touch $(UI_INSTALLED)

$(UI_BUILT): $(UI_INSTALLED) $(UI_SOURCES)
	cd ui && npm run build

ui: $(UI_BUILT)

ui-test: $(UI_INSTALLED)
	cd ui && npm test

run: install sandbox-deps ui
	$(BIN)/bifrost serve

# The images the container tests run (the first time: a Debian base made with debootstrap, then both Dockerfiles),
# built before the tests so that none of them waits on a build; kept by podman, rebuilt only when what they are
# made from changed.
images: install container-deps ui
	$(BIN)/python -m bifrost_devtools.images

# How many pytest processes share out the test files (pytest-xdist), a file to one process so that the services a
# module starts once serve all its tests. Two by default: the suite waits on services and subprocesses so much that
# two processes take about half the time of one, even on two cores. 0 runs them all in this one; auto starts one
# per core. The 25 slowest tests are listed at the end, to show where the suite's time goes.
TEST_WORKERS ?= 2

test: install system-deps lint ui ui-test images
	$(BIN)/python -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile --durations=25

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy sdk/bifrost cli/bifrost_cli runner_image/bifrost_runner control_plane devtools/bifrost_devtools

bench: install ui container-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bifrost .pytest_cache .mypy_cache .ruff_cache ui/node_modules ui/dist
