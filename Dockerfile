# The control-plane image (`bifrost serve`), used by k8s/ and the Helm chart. Build it from the repository root:
#   docker build -t bifrost:0.1.0 .
# The runner image is runner_image/Dockerfile.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk sdk
COPY runner_image runner_image
COPY control_plane control_plane
RUN pip install --no-cache-dir --no-compile --prefix=/install '.[server]'

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIFROST_HOST=0.0.0.0 \
    BIFROST_DATA_DIR=/tmp/bifrost
COPY --from=build /install /usr/local
# Compiled once here: the root filesystem is read-only at run time.
RUN python -m compileall -q /usr/local/lib/python3.11/site-packages \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp bifrost
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["bifrost"]
CMD ["serve"]
