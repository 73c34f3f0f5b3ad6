# The control-plane image (`bifrost serve`), used by k8s/ and the Helm chart. Build it from the repository root:
#   docker build -t bifrost:0.1.0 .
# The runner image is runner_image/Dockerfile.

FROM python:3.11-slim AS build
# The uv that uv.lock pins for development; it installs exactly what the lock pins.
RUN pip install --no-cache-dir uv==0.13.10
ENV UV_PROJECT_ENVIRONMENT=/opt/bifrost \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy
WORKDIR /src
# Every member's pyproject.toml, so that uv can check the lock against the workspace; the code of those installed.
COPY pyproject.toml uv.lock README.md ./
COPY devtools/pyproject.toml devtools/
COPY sdk sdk
COPY cli cli
COPY runner_image runner_image
COPY control_plane control_plane
# The server with the runner (its local backend runs runners from its own environment), the SDK and the `bifrost`
# command: no dev tools.
RUN uv sync --locked --no-dev --no-editable --package bifrost-server

FROM python:3.11-slim
ENV PATH=/opt/bifrost/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIFROST_HOST=0.0.0.0 \
    BIFROST_DATA_DIR=/tmp/bifrost
COPY --from=build /opt/bifrost /opt/bifrost
# Compiled once here: the root filesystem is read-only at run time.
RUN python -m compileall -q /opt/bifrost/lib/python3.11/site-packages \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp bifrost
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["bifrost"]
CMD ["serve"]
