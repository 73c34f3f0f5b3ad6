# The control-plane image (`bifrost serve`), used by k8s/ and the Helm chart, with the web UI. Build it from the
# repository root, after `make ui` (the image takes the built UI from ui/dist):
#   make ui && docker build -t bifrost:0.1.0 .
# BASE_IMAGE may name any Debian-like image with Python 3.11 and its venv module.
# The runner image is runner_image/Dockerfile.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS uv
# The uv that uv.lock pins for development; it installs exactly what the lock pins.
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check uv==0.13.10
# The system's certificate authorities, as pip trusts them (a proxy in between may present its own).
ENV PATH=/opt/uv/bin:$PATH \
    UV_SYSTEM_CERTS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/bifrost \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy
WORKDIR /src
# Every member's pyproject.toml and the lock: what uv needs to check the lock and install the dependencies.
COPY pyproject.toml uv.lock ./
COPY sdk/pyproject.toml sdk/
COPY runner_image/pyproject.toml runner_image/
COPY cli/pyproject.toml cli/
COPY devtools/pyproject.toml devtools/

FROM uv AS dependencies
# The dependencies of the server, the runner (its local backend runs runners from its own environment), the SDK and
# the `bifrost` command as the lock pins them, before any code is copied: a change to the code does not install them
# again. No dev tools. Compiled here, for the root filesystem is read-only at run time.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --package bifrost-server \
    && python3 -m compileall -q --invalidation-mode unchecked-hash /opt/bifrost/lib

FROM dependencies AS code
COPY README.md ./
COPY sdk sdk
COPY cli cli
COPY runner_image runner_image
COPY control_plane control_plane
# The four packages alone (their dependencies are in place), under a prefix of their own that the image lays over
# the environment, with the built web UI, as its last layer; compiled for the path they run from.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/bifrost/bin/python --no-deps --prefix /opt/project ./sdk ./cli ./runner_image . \
    && rm -f /opt/project/.lock \
    && python3 -m compileall -q --invalidation-mode unchecked-hash -s /opt/project -p /opt/bifrost /opt/project/lib
COPY ui/dist /opt/project/ui

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="bifrost" \
      org.opencontainers.image.description="The Bifrost control plane: API, web UI, workflow registry, queue and runners." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/bifrost/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIFROST_HOST=0.0.0.0 \
    BIFROST_DATA_DIR=/tmp/bifrost \
    BIFROST_UI_DIR=/opt/bifrost/ui
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp bifrost
COPY --from=dependencies /opt/bifrost /opt/bifrost
COPY --from=code /opt/project /opt/bifrost
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["bifrost"]
CMD ["serve"]
