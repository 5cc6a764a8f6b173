#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: PostgreSQL, Squid, dnsmasq and Chromium.
# Idempotent and quiet; it only calls apt-get when something is missing.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v squid >/dev/null 2>&1 || [ -x /usr/sbin/squid ] || missing+=(squid)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)  # Unicode text in PDF exports
if [ "${WITH_VALGRIND:-0}" = 1 ]; then  # only for `make bench-instructions`
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "system-deps: please install: ${missing[*]} (needs root)" >&2
    exit 1
  fi
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start their own services; the tests run private instances on loopback instead.
  (service squid stop || true) >/dev/null 2>&1
  (service dnsmasq stop || true) >/dev/null 2>&1
fi
if [ -f tools/playground/package.json ] && [ ! -d tools/playground/node_modules ]; then
  (cd tools/playground && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ -f tools/validators/package.json ] && [ ! -d tools/validators/node_modules ]; then
  (cd tools/validators && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ -f tools/tab/package.json ] && [ ! -d tools/tab/node_modules ]; then
  (cd tools/tab && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
