#!/usr/bin/env bash
# Runs the generated project's benchmark: generates the template into target/generated/bench,
# finds a server as test.sh does, and runs its `bench` binary in release mode. Arguments go to
# bench (--rows N, --users N, --json FILE; FILE is relative to where you run this).
#
#   scripts/bench.sh [--dev] [--rows 100000] [--users 1000] [--json bench.json]
#
# --dev builds without optimisations: a quick check that it runs; its numbers mean nothing.
# The scratch database is created beside DATABASE_URL's and dropped afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
profile=(--release)
if [ "${1:-}" = --dev ]; then profile=(); shift; fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

need_cargo_generate
parent="$root/target/generated/bench"
rm -rf "$parent" && mkdir -p "$parent"
(cd "$parent" && cargo generate --path "$root" template --name bench-run --silent --vcs none) >/dev/null
project="$parent/bench-run"

server_or_private

say "building and running bench ${profile[*]:-(dev build: numbers are not meaningful)}"
DATABASE_URL=$server cargo run --quiet "${profile[@]}" \
  --manifest-path "$project/Cargo.toml" --bin bench -- "$@"
