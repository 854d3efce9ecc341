#!/usr/bin/env bash
# The migration workflow, a thin wrapper over `cargo run --bin migrate`:
#
#   scripts/migrate.sh init | create "msg" | upgrade | downgrade | current | history
#   scripts/migrate.sh redo | stamp VERSION | verify | lint | test | check
#
# `scripts/migrate.sh --help` and `scripts/migrate.sh <verb> --help` explain every option.
# The database: --url, else DATABASE_URL (also from .env), else the server at
# 127.0.0.1:5432 with the database named after the package (Cargo.toml's name, - as _).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

pg_default_url "$@"
pg_run_bin migrate "$@"
