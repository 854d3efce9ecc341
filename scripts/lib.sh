# Shared by the template repository's own scripts (test.sh, quickstart.sh): the tools their
# checks need, installed when missing, and the database resolution of scripts/pg.sh.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/pg.sh"

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

# pgbouncer (Debian's package) for tests/pgbouncer.rs, installed when missing and apt-get can.
need_pgbouncer() {
  if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "pgbouncer is not installed (apt-get install pgbouncer): its tests will skip"
    return 0
  fi
  say "installing pgbouncer (apt-get, once)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
}

# Copies the checkout's own files into DIR, the folder to generate from: cargo-generate
# --path copies the whole folder before it applies its ignore list, and a built target/ is
# gigabytes. In a git checkout that is what git tracks plus new files it does not ignore
# (uncommitted changes included); otherwise everything but target/.
stage_template() {
  local dest=$1
  mkdir -p "$dest"
  if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' file; do
        [ -e "$file" ] && printf '%s\0' "$file" # tracked but deleted: not there to copy
      done | tar --null -T - -cf -) | tar -C "$dest" -xf -
  else
    tar -C "$root" --exclude=./target -cf - . | tar -C "$dest" -xf -
  fi
}
