#!/usr/bin/env bash
# Runs the Microsoft 365 Agents Playground (a local Teams-like client) in the foreground against the bot.
#   BOT_URL            bot messaging endpoint        (default http://localhost:3978/api/messages)
#   PLAYGROUND_PORT    port of the playground        (default 56150); its connector serviceUrl is
#                      http://localhost:$PLAYGROUND_PORT/_connector
#   PLAYGROUND_CONFIG  optional .m365agentsplayground.yml (users, team, channels)
#                      (default tools/playground/.m365agentsplayground.yml if present, else built-in mock data)
#   PLAYGROUND_LOG     playground log file           (default var/playground/playground.log)
# The bot must run in local dev mode (empty app id): the playground sends no Authorization header.
# Telemetry is switched off and nothing but loopback is contacted. Idempotent: installs tools/playground's
# node_modules only when missing, and exits 0 if a playground already answers on the port.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_DIR="$ROOT/tools/playground"
BOT_URL="${BOT_URL:-http://localhost:3978/api/messages}"
PORT="${PLAYGROUND_PORT:-56150}"
URL="http://localhost:$PORT"

if [ ! -x "$PG_DIR/node_modules/.bin/agentsplayground" ]; then
  (cd "$PG_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# The playground silently moves to a random port when its port is taken; refuse that instead.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  if node -e "fetch('http://127.0.0.1:$PORT/_debug/ping').then(r=>r.text()).then(t=>process.exit(t==='pong'?0:1),()=>process.exit(1))"; then
    echo "playground already running: $URL"
    exit 0
  fi
  echo "playground: port $PORT is in use by something else (set PLAYGROUND_PORT)" >&2
  exit 1
fi

LOG="${PLAYGROUND_LOG:-$ROOT/var/playground/playground.log}"
mkdir -p "$(dirname "$LOG")"
export M365_AGENTS_PLAYGROUND_LOGFILE="$LOG"   # default would be ./devTools/ in the current directory
# Mock Teams data (users, team, channels): $PLAYGROUND_CONFIG, else tools/playground/.m365agentsplayground.yml
# when it exists, else the built-in defaults (never a stray config in the current directory).
CONFIG="${PLAYGROUND_CONFIG:-$PG_DIR/.m365agentsplayground.yml}"
export M365_AGENTS_PLAYGROUND_CONFIG_PATH="$CONFIG" TEAMS_APP_TEST_TOOL_CONFIG_PATH="$CONFIG"

export TEAMSAPPTESTER_BROWSER=none            # do not open a browser
export DEFAULT_CHANNEL_ID=msteams
# No auth: with AUTH_CLIENT_ID/AUTH_CLIENT_SECRET set it would fetch tokens and keys from login.microsoftonline.com.
unset AUTH_CLIENT_ID AUTH_CLIENT_SECRET AUTH_TENANT_ID
# Telemetry off: --disable-telemetry drops the events, but the bundled Application Insights client is still
# created and its statsbeat probes the Azure metadata address (169.254.169.254) and resolves Azure hosts.
export APPLICATION_INSIGHTS_NO_STATSBEAT=true
export APPLICATIONINSIGHTS_CONFIGURATION_CONTENT='{"disableAppInsights":true,"disableStatsbeat":true}'
# Never send the bot traffic through a proxy.
export NO_PROXY="localhost,127.0.0.1,::1${NO_PROXY:+,$NO_PROXY}" no_proxy="localhost,127.0.0.1,::1${no_proxy:+,$no_proxy}"

echo "playground: open $URL  (bot: $BOT_URL, serviceUrl: $URL/_connector, log: $LOG)"
exec "$PG_DIR/node_modules/.bin/agentsplayground" start \
  --app-endpoint "$BOT_URL" --channel-id msteams --port "$PORT" --disable-telemetry
