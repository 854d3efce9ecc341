# Shared by the repository's scripts: tool installation and the database resolution of
# template/scripts/pg.sh (the generated project's own copy, so both agree).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/template/scripts/pg.sh"

# Newest releases that build on rustc 1.95.
CARGO_GENERATE_VERSION=0.23.7
DIESEL_CLI_VERSION=2.3.14

say() { printf '==> %s\n' "$*"; }

# Installs cargo-generate when missing.
need_cargo_generate() {
  if cargo generate --version >/dev/null 2>&1; then return 0; fi
  say "installing cargo-generate $CARGO_GENERATE_VERSION (about 3 minutes, once)"
  cargo install cargo-generate --locked --version "$CARGO_GENERATE_VERSION"
}

# Installs diesel_cli when missing: against the system libpq if there is one, else bundled.
need_diesel_cli() {
  if diesel --version >/dev/null 2>&1; then return 0; fi
  local feature=postgres-bundled
  if pg_config --libdir >/dev/null 2>&1 && ls "$(pg_config --libdir)"/libpq.so >/dev/null 2>&1; then
    feature=postgres
  fi
  say "installing diesel_cli $DIESEL_CLI_VERSION with $feature (a few minutes, once)"
  cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --no-default-features \
    --features "$feature" --locked
}

# Sets $server: pg_resolve's answer, else a private throwaway cluster, stopped and deleted
# when the calling script exits (PG_EXTRA_OPTS passes it server settings).
server_or_private() {
  if server=$(pg_resolve); then
    say "PostgreSQL: $(pg_mask "$server")"
    return 0
  fi
  private_cluster=$(mktemp -d /tmp/pg-run-XXXXXX)
  trap 'pg_private_stop "$private_cluster"; rm -rf "$private_cluster"' EXIT
  say "no server: starting a private cluster in $private_cluster"
  server=$(pg_private_start "$private_cluster")
}
