#!/usr/bin/env bash
# The tools the project's scripts need beyond cargo, installed when missing. Sourced by
# scripts/ci.sh (and the template repository's own scripts).

# Newest diesel_cli that builds on rustc 1.95; `migrate check` runs its print-schema.
DIESEL_CLI_VERSION=2.3.14

# Installs diesel_cli when missing: against the system libpq if there is one, else bundled.
need_diesel_cli() {
  if diesel --version >/dev/null 2>&1; then return 0; fi
  local feature=postgres-bundled
  if pg_config --libdir >/dev/null 2>&1 && ls "$(pg_config --libdir)"/libpq.so >/dev/null 2>&1; then
    feature=postgres
  fi
  printf '==> installing diesel_cli %s with %s (a few minutes, once)\n' "$DIESEL_CLI_VERSION" "$feature" >&2
  cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --no-default-features \
    --features "$feature" --locked
}

# wrk (Debian's package), the HTTP load generator of `scripts/bench.sh http`, installed when
# missing and apt-get can (as root); otherwise says how and fails, since the bench needs it.
need_wrk() {
  if command -v wrk >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    printf '==> wrk is not installed: apt-get install wrk (Debian, Ubuntu), brew install wrk\n' >&2
    return 1
  fi
  printf '==> installing wrk (apt-get, once)\n' >&2
  # A fresh image has no package lists yet: update only when the install cannot find it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
}

# pg_auto_failover (Debian's postgresql-15-auto-failover and pg-auto-failover-cli, 2.0), for
# `scripts/pg.sh formation` and the test of a failover under it, installed when missing and
# apt-get can (as root); otherwise says how and fails, as need_wrk does.
need_pg_auto_failover() {
  if command -v pg_autoctl >/dev/null 2>&1; then return 0; fi
  local packages=(postgresql-15-auto-failover pg-auto-failover-cli)
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    printf '==> pg_auto_failover is not installed: apt-get install %s (Debian, Ubuntu)\n' "${packages[*]}" >&2
    return 1
  fi
  printf '==> installing pg_auto_failover (apt-get, once)\n' >&2
  # A fresh image has no package lists yet: update only when the install cannot find it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
}
