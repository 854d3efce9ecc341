#!/usr/bin/env bash
# The whole test suite: the harness's own checks, then (from the harness tests) the
# generated project's build, clippy, fmt check and tests, all against PostgreSQL.
#
#   scripts/test.sh [cargo test args...]
#
# The server: DATABASE_URL, else 127.0.0.1:5432, else a private throwaway cluster stopped
# at the end (PG_FORCE_PRIVATE=1 forces it). One CARGO_TARGET_DIR (default target/) serves
# the harness and every generated project, so dependencies compile once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

need_cargo_generate
need_diesel_cli
export REQUIRE_DIESEL_CLI=1

PG_EXTRA_OPTS="-c fsync=off -c max_connections=200" server_or_private
export DATABASE_URL=$server
# PG_FORCE_PRIVATE chose the server above; the tests pass their own servers explicitly.
unset PG_FORCE_PRIVATE

say "harness: fmt, clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
scripts/fmt-template.sh --check

say "tests (the generated project's build and tests run inside them)"
cargo test "$@"
