#!/usr/bin/env bash
# Runs the benchmark: finds a server as every script does (else a private cluster, removed
# afterwards) and runs the `bench` binary in release mode. Arguments go to bench (--rows N,
# --users N, --json FILE; FILE is relative to where you run this).
#
#   scripts/bench.sh [--dev] [--rows 100000] [--users 1000] [--json bench.json]
#   scripts/bench.sh [--dev] http [--connections 8,32] [--duration 10s] [--json http.json]
#
# `http` drives the HTTP API instead: a release `serve` on a seeded scratch database, loaded
# by wrk (installed when missing: apt-get install wrk) with GET /tasks/{id}, GET
# /users/{id}/tasks and POST /tasks at each connection count, beside pgbench's point reads
# in the same run; the server is stopped with SIGTERM and must exit 0.
# --dev builds without optimisations: a quick check that it runs; its numbers mean nothing.
# The scratch database is created beside DATABASE_URL's and dropped afterwards, also on
# Ctrl-C or a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/pg.sh"
. "$here/scripts/tools.sh"

case "${1:-}" in -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
profile=(--release)
if [ "${1:-}" = --dev ]; then profile=(); shift; fi
mode=()
if [ "${1:-}" = http ]; then
  mode=(http)
  shift
  if [ "${1:-}" = --dev ]; then profile=(); shift; fi
  need_wrk
  # The service binary too, beside bench, which runs it (unless --server names another).
  case " $* " in
    *" --server "* | *" --server="*) ;;
    *)
      package=$(awk -F'"' '/^\[/ { s = $0 } s == "[package]" && /^name *=/ { print $2; exit }' \
        "$here/Cargo.toml")
      echo "==> building $package ${profile[*]:-(dev build)}" >&2
      cargo build "${profile[@]}" --manifest-path "$here/Cargo.toml" --bin "$package" >&2
      ;;
  esac
fi

pg_server_or_private
echo "==> building and running bench ${mode[*]:-} ${profile[*]:-(dev build: numbers are not meaningful)}" >&2
DATABASE_URL=$server cargo run --quiet "${profile[@]}" \
  --manifest-path "$here/Cargo.toml" --bin bench -- "${mode[@]}" "$@"
