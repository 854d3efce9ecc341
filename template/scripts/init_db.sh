#!/usr/bin/env bash
# Creates the database if missing, applies pending migrations, seeds demo data with --seed.
# Idempotent: a second run changes nothing. A thin wrapper over `cargo run --bin init_db`.
#
#   scripts/init_db.sh --url postgres://user:password@localhost:5432/app [--seed]
#
# Without --url: DATABASE_URL (also from .env), else the server at 127.0.0.1:5432 with the
# database {{crate_name}}. `scripts/init_db.sh --help` lists every option.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

has_url=0
for arg in "$@"; do
  case "$arg" in --url|--url=*|-h|--help|-V|--version) has_url=1 ;; esac
done
if [ $has_url = 0 ] && [ -z "${DATABASE_URL:-}" ] && ! grep -qs '^DATABASE_URL=' .env; then
  if server=$(pg_resolve); then
    set -- --url "$(pg_with_database "$server" {{crate_name}})" "$@"
  else
    echo "init_db.sh: no database: pass --url, set DATABASE_URL, or start a private server:" >&2
    echo "  scripts/pg.sh start .pg   # then pass --url with the URL it prints" >&2
    exit 1
  fi
fi
exec cargo run --quiet --bin init_db -- "$@"
