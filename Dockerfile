# syntax=docker/dockerfile:1
# One image for every leadstream service and for the one-shot jobs (migrate, topics apply):
#   docker run IMAGE run discovery        # a service (default: run projection)
#   docker run IMAGE migrate              # every service's migrations
#   docker run IMAGE topics apply         # every contract topic and its .dlq
# Build from the repository root: docker build -t leadstream:local .
# The analysts' variant (pyarrow + duckdb for `leadstream export --format parquet`), from the same lock files:
#   docker build --build-arg LOCKFILE=analytics -t leadstream-analytics:local .

# The base, pinned by digest: the multi-platform index of python:3.11-slim (Python 3.11.15, Debian trixie), as
# published in github.com/docker-library/repo-info (repos/python/remote/3.11-slim.md, commit 2477d553). To move
# it: `docker buildx imagetools inspect python:3.11-slim` prints the index digest ("Digest:"); replace it here,
# the only place it is written (tests/deploy/test_image.py checks it is a full sha256 digest).
ARG PYTHON_IMAGE=python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
# The console's npm packages come from a node image (by tag: pin its digest the same way when you move it).
ARG NODE_IMAGE=node:20-slim

# ---- frontend: the console's npm packages, exactly as locked (served as they are: no build step) ----
FROM ${NODE_IMAGE} AS frontend
WORKDIR /console
COPY services/console/package.json services/console/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# ---- build: a self-contained virtualenv with the two distributions and their runtime deps only ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Same path in both stages: a venv's scripts carry its absolute path in their shebangs.
RUN python -m venv /opt/leadstream

WORKDIR /src
# runtime (default): the services' dependencies; analytics: plus pyarrow and duckdb. Both are hash-locked.
ARG LOCKFILE=runtime
COPY requirements/ requirements/
# Every third-party package from the lock file, each checked against its hash; nothing resolved at build time.
RUN /opt/leadstream/bin/pip install --require-hashes --no-deps -r "requirements/${LOCKFILE}.txt"
COPY schemas/ schemas/
COPY pyproject.toml ./
COPY services/ services/
COPY leadstream_cli/ leadstream_cli/
# The files the console serves from its packages become package data of the distribution (see pyproject.toml).
COPY --from=frontend /console/node_modules services/console/node_modules

# Non-editable installs of the two distributions, without dependencies (the lock brought them) and with the
# locked setuptools (no build isolation: nothing fetched unpinned). The image must not depend on /src, which the
# runtime stage drops. `pip check` proves the lock satisfies both. Bytecode is compiled now because the root
# filesystem is read-only at run time.
RUN /opt/leadstream/bin/pip install --no-deps --no-build-isolation ./schemas . \
 && /opt/leadstream/bin/pip check \
 && /opt/leadstream/bin/python -m compileall -q -j 0 /opt/leadstream/lib

# ---- runtime: the venv on a clean base, running as an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="leadstream" \
      org.opencontainers.image.description="B2B outreach automation as event-sourced microservices on Kafka" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric uid/gid so Kubernetes can verify runAsNonRoot without a name lookup. The base image ships
# the standard library without bytecode; it is compiled once here, not at every start of a read-only container.
RUN groupadd --system --gid 10001 leadstream \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin leadstream \
 && python -m compileall -q -j 0 -x '/(test|tests|idle_test)/' "$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"

COPY --from=build /opt/leadstream /opt/leadstream

ENV PATH=/opt/leadstream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADSTREAM_HTTP_HOST=0.0.0.0 \
    LEADSTREAM_HTTP_PORT=8080

# An empty, root-owned working directory: nothing on sys.path from the current directory.
WORKDIR /app
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["leadstream"]
CMD ["run", "projection"]
