#!/usr/bin/env bash
# Creates the database if missing, applies pending migrations, seeds demo data with --seed.
# Idempotent: a second run changes nothing. A thin wrapper over `cargo run --bin init_db`.
#
#   scripts/init_db.sh --url postgres://user:password@localhost:5432/app [--seed]
#
# Without --url: DATABASE_URL (also from .env), else the server at 127.0.0.1:5432 with the
# database named after the package (Cargo.toml's name, - as _).
# When the project has no .env yet, the URL is written there (0600), so `cargo run` and the
# other scripts find the same database; `--env-file PATH` writes elsewhere.
# `scripts/init_db.sh --help` lists every option.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

pg_default_url "$@"
env_file=(--env-file .env)
for arg in "$@"; do
  case "$arg" in --env-file | --env-file=*) env_file=() ;; esac
done
pg_run_bin init_db "${env_file[@]}" "$@"
