#!/usr/bin/env bash
# Creates the database if missing, applies pending migrations, seeds demo data with --seed.
# Idempotent: a second run changes nothing. A thin wrapper over `cargo run --bin init_db`.
#
#   scripts/init_db.sh --url postgres://user:password@localhost:5432/app [--seed]
#
# Without --url: DATABASE_URL (also from .env), else the server at 127.0.0.1:5432 with the
# database named after the package (Cargo.toml's name, - as _).
# `scripts/init_db.sh --help` lists every option.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

pg_default_url "$@"
pg_run_bin init_db "$@"
