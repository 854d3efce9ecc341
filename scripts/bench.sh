#!/usr/bin/env bash
# Runs the benchmark: finds a server as every script does (else a private cluster, removed
# afterwards) and runs the `bench` binary in release mode. Arguments go to bench (--rows N,
# --users N, --json FILE; FILE is relative to where you run this).
#
#   scripts/bench.sh [--dev] [--rows 100000] [--users 1000] [--json bench.json]
#
# --dev builds without optimisations: a quick check that it runs; its numbers mean nothing.
# The scratch database is created beside DATABASE_URL's and dropped afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/pg.sh"

case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
profile=(--release)
if [ "${1:-}" = --dev ]; then profile=(); shift; fi

pg_server_or_private
echo "==> building and running bench ${profile[*]:-(dev build: numbers are not meaningful)}" >&2
DATABASE_URL=$server cargo run --quiet "${profile[@]}" \
  --manifest-path "$here/Cargo.toml" --bin bench -- "$@"
