#!/usr/bin/env bash
# Generates a project from this template into DIR (default ./my-service), finds or starts a
# PostgreSQL server, creates, migrates and seeds the project's database, and says what next.
#
#   scripts/quickstart.sh [DIR]
#
# The server: DATABASE_URL if set (used as is, database included), else 127.0.0.1:5432,
# else a private cluster in DIR/.pg (left running; stop it with scripts/pg.sh stop DIR/.pg).
# PG_FORCE_PRIVATE=1 takes the private cluster even when a server runs.
# The project name is DIR's last component unless PROJECT_NAME is set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
dir=${1:-./my-service}
name=${PROJECT_NAME:-$(basename "$dir")}
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "quickstart: $dir exists and is not empty; choose another directory" >&2
  exit 1
fi

need_cargo_generate
say "generating $name into $dir"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
stage_template "$staging/source"
mkdir "$staging/out"
(cd "$staging/out" && cargo generate --path "$staging/source" --name "$name" --silent) >/dev/null
mkdir -p "$(dirname "$dir")"
rmdir "$dir" 2>/dev/null || true
mv "$staging"/out/*/ "$dir"
dir=$(cd "$dir" && pwd)
crate=$(cd "$dir" && pg_package_db)

private=""
if server=$(pg_resolve); then
  if [ -n "${DATABASE_URL:-}" ] && [ "${PG_FORCE_PRIVATE:-0}" != 1 ]; then
    url=$DATABASE_URL
    say "using DATABASE_URL: $(pg_mask "$url")"
  else
    url=$(pg_with_database "$server" "$crate")
    say "using the server at 127.0.0.1:5432"
  fi
else
  private="$dir/.pg"
  # initdb refuses root; as root the cluster belongs to another account, which may not
  # reach DIR (e.g. under /root): fall back to a directory under /tmp.
  if [ "$(id -u)" -eq 0 ] && ! pg_as_owner test -x "$dir"; then
    private=$(mktemp -d /tmp/pg-XXXXXX)
  fi
  say "no server running: starting a private PostgreSQL cluster in $private"
  server=$(pg_private_start "$private")
  url=$(pg_with_database "$server" "$crate")
fi
# .env holds the password: readable by its owner only, from its first byte.
(umask 077 && rm -f "$dir/.env" && printf 'DATABASE_URL=%s\n' "$url" >"$dir/.env")

say "creating, migrating and seeding the database"
# The URL through the environment, never --url: every local user sees a command line (ps).
(cd "$dir" && DATABASE_URL=$url DATABASE_DIRECT_URL=$url scripts/init_db.sh --seed)

cat <<NEXT

Created $dir, with its database at $(pg_mask "$url") (written to $dir/.env).
Next:
  cd $dir
  cargo test                      # the project's tests, against that server
  scripts/init_db.sh --seed       # again: changes nothing
  diesel migration run            # diesel_cli works on migrations/ too
NEXT
if [ -n "$private" ]; then
  cat <<NEXT
The private server keeps running. Stop it, and start it again, with:
  scripts/pg.sh stop $private
  scripts/pg.sh start $private
NEXT
fi
