#!/usr/bin/env bash
# `make run`: the bot in local dev mode on an embedded SQLite database with the demo school, plus the
# Microsoft 365 Agents Playground as a Teams-like client. Ctrl+C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
export ESAFETY_DEV=1
export PORT="${PORT:-3978}"
export DATABASE_URL="${DATABASE_URL:-sqlite+aiosqlite:///var/esafety.db}"
export ESAFETY_CONFIG="${ESAFETY_CONFIG:-config/demo.yaml}"
PLAYGROUND_PORT="${PLAYGROUND_PORT:-56150}"
# The "tenant's service URL" in dev is the playground's connector, so the DSL channel card is posted there before
# anyone has spoken in that channel.
export TEAMS_SERVICE_URL="${TEAMS_SERVICE_URL:-http://localhost:$PLAYGROUND_PORT/_connector}"
mkdir -p var

"$PY" app.py migrate
"$PY" app.py serve > var/bot.log 2>&1 &
BOT_PID=$!
trap 'kill $BOT_PID 2>/dev/null || true; wait $BOT_PID 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  if "$PY" - <<PYEOF 2>/dev/null; then break; fi
import urllib.request
urllib.request.urlopen("http://127.0.0.1:$PORT/readyz", timeout=1)
PYEOF
  if ! kill -0 $BOT_PID 2>/dev/null; then echo "The bot did not start; see var/bot.log" >&2; tail -20 var/bot.log >&2; exit 1; fi
  sleep 0.2
done

echo
echo "  eSafety bot:  http://127.0.0.1:$PORT/api/messages   (log: var/bot.log; local dev mode, demo school)"
echo "  Open the Teams-like client:  http://localhost:$PLAYGROUND_PORT"
echo "  Try: help, report, my reports. Ctrl+C stops both."
echo
BOT_URL="http://127.0.0.1:$PORT/api/messages" PLAYGROUND_PORT="$PLAYGROUND_PORT" bash scripts/playground.sh
