#!/usr/bin/env bash
# The project's CI, the same here and in .github/workflows/ci.yml:
#
#   scripts/ci.sh
#
# Steps, in order: fmt, clippy, migrate lint, migrate test, migrate check (src/schema.rs
# against the migrations), cargo test. Each is named as it starts; the first that fails
# stops the run, which exits 1 naming it. The database: DATABASE_URL (also from .env), else
# the server at 127.0.0.1:5432 with the database named after the package, else a private
# throwaway cluster (PostgreSQL's server binaries). diesel_cli, which `migrate check`
# needs, is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
. scripts/tools.sh

# Runs a named step; stops everything at its first failure, naming it.
step() {
  local name=$1
  shift
  printf '==> ci: %s\n' "$name"
  if ! "$@"; then
    printf 'ci: FAILED at step "%s"\n' "$name" >&2
    exit 1
  fi
}

if [ -z "${DATABASE_URL:-}" ] && ! grep -qs '^DATABASE_URL=' .env; then
  pg_server_or_private
  DATABASE_URL=$(pg_with_database "$server" "$(pg_package_db)")
  export DATABASE_URL
fi
need_diesel_cli

migrate() { cargo run --quiet --bin migrate -- "$@"; }

step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --all-targets --quiet -- -D warnings
step "migrate lint" migrate lint
step "migrate test" migrate test
step "migrate check" migrate check
step "cargo test" cargo test
printf '==> ci: all steps passed\n'
