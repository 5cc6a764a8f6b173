#!/bin/sh
# The container's one process: the image's CMD and compose's `command` both run this, and
# tests/test_container_kit.py runs it too, so what is tested is what ships.
# `python app.py serve` checks the settings first (it refuses to start without MicrosoftAppId outside dev mode),
# then applies any pending database migrations and serves. `exec` makes the app PID 1's direct replacement, so
# SIGTERM from the container runtime reaches it and it shuts down gracefully.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" app.py serve
