#!/bin/sh
# Restore a backup made by scripts/backup.sh into a new, empty database (docs/operations.md, "Restore").
#   DATABASE_URL=<the URL the app will use, naming the NEW database> sh scripts/restore.sh <file.dump>
# The database is created when it does not exist (the login needs CREATEDB, as the Azure admin has); one that
# already holds tables is refused, so a restore can never land on top of live data.
set -eu

if [ $# -ne 1 ] || [ -z "${DATABASE_URL:-}" ]; then
  echo "usage: DATABASE_URL=postgresql+asyncpg://.../<new database> sh scripts/restore.sh <file.dump>" >&2
  exit 2
fi
dump="$1"
[ -f "$dump" ] || { echo "restore.sh: no such backup file: $dump" >&2; exit 2; }
url=$(printf '%s' "$DATABASE_URL" | sed -e 's#^postgresql+asyncpg://#postgresql://#' -e 's/\([?&]\)ssl=/\1sslmode=/')
name=$(printf '%s' "$url" | sed -E 's#^postgresql://[^/]*/([^?]*).*$#\1#')
maintenance=$(printf '%s' "$url" | sed -E 's#^(postgresql://[^/]*)/[^?]*#\1/postgres#')
case "$name" in
  "" | *[!A-Za-z0-9_-]*) echo "restore.sh: name the new database in DATABASE_URL (letters, digits, _ and -)" >&2; exit 2 ;;
esac

exists=$(psql "$maintenance" -X -tA -v ON_ERROR_STOP=1 -c "SELECT 1 FROM pg_database WHERE datname = '$name'")
if [ -z "$exists" ]; then
  psql "$maintenance" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$name\""
fi
tables=$(psql "$url" -X -tA -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
if [ "$tables" != "0" ]; then
  echo "restore.sh: database $name already has tables; restore only into a new, empty database" >&2
  exit 1
fi
# One transaction: a restore that fails part-way leaves the database empty, not half-filled.
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$url" "$dump"
echo "Restored $dump into database $name. Next: start the app on it, then run python app.py verify-audit."
