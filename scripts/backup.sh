#!/bin/sh
# Back up the bot's PostgreSQL database to one file in pg_dump's custom format (docs/operations.md, "Backup").
#   DATABASE_URL=<the app's DATABASE_URL> sh scripts/backup.sh <file.dump>
# Safe while the app runs: pg_dump reads one consistent snapshot. The file holds case details encrypted under
# ESAFETY_DATA_KEY and an audit trail sealed with ESAFETY_AUDIT_KEY: store the keys apart from the backups.
# Needs pg_dump and pg_restore of the server's major version or newer on PATH (Debian: postgresql-client).
set -eu

if [ $# -ne 1 ] || [ -z "${DATABASE_URL:-}" ]; then
  echo "usage: DATABASE_URL=postgresql+asyncpg://... sh scripts/backup.sh <file.dump>" >&2
  exit 2
fi
out="$1"
# The app's URL is SQLAlchemy's (postgresql+asyncpg://...?ssl=require); pg_dump wants libpq's.
url=$(printf '%s' "$DATABASE_URL" | sed -e 's#^postgresql+asyncpg://#postgresql://#' -e 's/\([?&]\)ssl=/\1sslmode=/')
case "$url" in
  postgresql://*) ;;
  *) echo "backup.sh: DATABASE_URL is not a PostgreSQL URL; SQLite is for development only" >&2; exit 2 ;;
esac

partial="$out.partial"
trap 'rm -f "$partial"' EXIT
pg_dump --format=custom --no-owner --no-privileges --file="$partial" "$url"
# A backup that cannot be listed cannot be restored: find out now, not on the day it is needed.
pg_restore --list "$partial" >/dev/null
mv "$partial" "$out"
trap - EXIT
echo "Backed up to $out"
