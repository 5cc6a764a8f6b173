# syntax=docker/dockerfile:1
# The eSafety bot as one container: one process (scripts/container-start.sh), non-root, health check by script.
# Build: docker build -t esafety-bot .   Settings come from the environment (docs/deploy.md, "Settings").
# tests/test_container_kit.py runs the CMD and HEALTHCHECK scripts named below against a real app and PostgreSQL.

# 1. Python dependencies, exactly as pinned and hashed in requirements-runtime.lock (requirements.lock's pins without
#    the test tools; `make lock` writes both), into a virtual environment.
FROM python:3.11-slim-bookworm AS python-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements-runtime.lock /tmp/requirements.lock
# (Three locked packages ship only as pure-Python source, so this stage builds them; no compiler is needed.)
RUN /opt/venv/bin/pip install --no-deps --require-hashes -r /tmp/requirements.lock && /opt/venv/bin/pip check

# 2. Teams JS for the desk tab, which the app serves from its own origin (no CDN), from package-lock.json.
FROM node:20-bookworm-slim AS tab-deps
WORKDIR /tab
COPY tools/tab/package.json tools/tab/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# 3. The image that runs: the slim Python base, the venv, the source, and no build tools.
FROM python:3.11-slim-bookworm
# DejaVu fonts: PDF exports need Unicode text (names and notes in any script).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 esafety \
    && useradd --system --uid 10001 --gid esafety --home-dir /app --no-create-home esafety
COPY --from=python-deps /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . .
COPY --from=tab-deps /tab/node_modules/@microsoft/teams-js/dist/umd tools/tab/node_modules/@microsoft/teams-js/dist/umd
# var/ holds the audit checkpoints; mount a volume here so they outlive the container.
RUN mkdir -p var && chown esafety:esafety var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080
USER 10001:10001
EXPOSE 8080
VOLUME ["/app/var"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "scripts/healthcheck.py", "/healthz"]
CMD ["sh", "scripts/container-start.sh"]
