#!/usr/bin/env bash
# The whole test suite of this repository: the application's format, lint and doc checks and
# its tests, then the template checks (tests/template/: generation under several names,
# quickstart, copying a model), all against PostgreSQL.
#
#   scripts/test.sh [cargo test args...]
#
# The server: DATABASE_URL, else 127.0.0.1:5432, else a private throwaway cluster stopped
# at the end (PG_FORCE_PRIVATE=1 forces it). One CARGO_TARGET_DIR (default target/) serves
# the application and every generated project, so dependencies compile once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# Disk: the app and several generated projects (each with its own test binaries) build in
# that one directory. Full debug info and incremental caches took it past 20 GB and a CI
# machine ran out of space; line tables keep backtraces readable at a third of the size.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}

need_cargo_generate
need_diesel_cli
need_pgbouncer
need_wrk
need_actionlint
need_pg_auto_failover
# Installed above: the checks that need them fail instead of skipping.
export REQUIRE_DIESEL_CLI=1 REQUIRE_CARGO_GENERATE=1 REQUIRE_ACTIONLINT=1 REQUIRE_WRK=1

PG_EXTRA_OPTS="-c fsync=off -c max_connections=200" pg_server_or_private
export DATABASE_URL=$server
# PG_FORCE_PRIVATE chose the server above; the tests pass their own servers explicitly.
unset PG_FORCE_PRIVATE

say "fmt, clippy, doc"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# Docs are part of the product: a broken intra-doc link fails like a lint.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --quiet
# The library alone (no `cli` feature) builds without the binaries' subscriber and flags.
cargo check --no-default-features --lib --quiet

say "tests (the template checks generate, build and test projects inside them)"
cargo test "$@"
# Alone, after the rest: four servers and a minute of faults beside the replica tests made
# those flaky (their routing depends on replay timing).
if [ $# -eq 0 ]; then
  say "failover under pg_auto_failover"
  REQUIRE_PG_AUTO_FAILOVER=1 cargo test --test app -- autofailover --nocapture
fi
