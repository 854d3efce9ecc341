#!/usr/bin/env bash
# Where a PostgreSQL server comes from, the same way for every script and test:
#   1. DATABASE_URL, if set;
#   2. else postgres://postgres@127.0.0.1:5432 if a server answers there;
#   3. else a private throwaway cluster (initdb + pg_ctl) on a Unix socket in a directory;
#   4. else a message saying how to install PostgreSQL or set DATABASE_URL.
# PG_FORCE_PRIVATE=1 skips 1 and 2 (tests of step 3 on machines that have a server).
# PG_PASSWORD=secret makes a new private cluster require that password (scram-sha-256).
#
# As a command:  scripts/pg.sh start DIR   start (or reuse) a private cluster in DIR, print its URL
#                scripts/pg.sh stop DIR    stop it
#                scripts/pg.sh replica PRIMARY_DIR DIR
#                                          start a streaming replica of that cluster in DIR
#                scripts/pg.sh bouncer UPSTREAM_DIR DIR [transaction|session]
#                                          start pgbouncer in DIR in front of that cluster
#                scripts/pg.sh bouncer-stop DIR
#                scripts/pg.sh formation DIR
#                                          start a pg_auto_failover monitor and three
#                                          nodes (a primary, two standbys, one of them
#                                          always synchronous) in DIR, print the
#                                          formation's multi-host URL
#                scripts/pg.sh autoctl DIR ARGS...
#                                          run pg_autoctl ARGS against that formation's
#                                          monitor (e.g. perform failover, show state)
#                scripts/pg.sh formation-stop DIR
#                                          stop that formation and remove DIR
#                scripts/pg.sh url         print the server URL steps 1-2 find, or fail
# Sourced, it defines pg_resolve, pg_server_or_private, pg_private_start, pg_private_stop and
# friends.

# Prints the directory holding initdb and pg_ctl, or fails.
pg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    # Through symlinks: the real directory also holds pg_basebackup and the rest.
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  local dir
  # Debian/Ubuntu keep server binaries off PATH; Homebrew and source builds elsewhere.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) \
             /usr/pgsql-*/bin /usr/local/pgsql/bin /opt/homebrew/opt/postgresql*/bin \
             /usr/local/opt/postgresql*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# True if a PostgreSQL server accepts connections at HOST:PORT.
pg_answers() {
  local host=$1 port=$2
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$port" -t 3
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

# The account that owns a private cluster: ourselves, or when root (initdb refuses root)
# the `postgres` account, else `nobody`.
pg_cluster_user() {
  if [ "$(id -u)" -ne 0 ]; then
    id -un
  elif id postgres >/dev/null 2>&1; then
    echo postgres
  else
    echo nobody
  fi
}

# Runs a command as the cluster's account.
pg_as_owner() {
  local user
  user=$(pg_cluster_user)
  if [ "$user" = "$(id -un)" ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$user" -- "$@"
  else
    su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
  fi
}

# Makes DIR for servers whose Unix sockets live in it, owned by the clusters' account when
# run as root (TOOL, initdb or pg_autoctl, refuses root), and prints its absolute path.
pg_prepare_dir() {
  local dir=$1 tool=$2
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # .s.PGSQL.NNNNN under DIR must fit a Unix socket path.
  if [ ${#dir} -gt 90 ]; then
    echo "pg.sh: $dir is too long for a Unix socket path (90 characters at most)" >&2
    return 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    chown "$(pg_cluster_user)" "$dir"
    if ! pg_as_owner test -w "$dir"; then
      echo "pg.sh: $(pg_cluster_user) cannot reach $dir ($tool refuses to run as root); use a directory under /tmp" >&2
      return 1
    fi
  fi
  echo "$dir"
}

# Starts a private cluster in DIR (created if needed; reused if already initialised)
# and prints its server URL. Socket only: nothing listens on TCP.
pg_private_start() {
  local dir=$1 bindir
  if ! bindir=$(pg_bindir); then
    pg_no_server_help
    return 1
  fi
  dir=$(pg_prepare_dir "$dir" initdb) || return 1
  local auth=(-A trust) userinfo=postgres
  if [ -n "${PG_PASSWORD:-}" ]; then
    # A cluster that checks passwords, e.g. to test what a wrong one does.
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$dir/pwfile")
    [ "$(id -u)" -ne 0 ] || chown "$(pg_cluster_user)" "$dir/pwfile"
    auth=(-A scram-sha-256 --pwfile="$dir/pwfile")
    userinfo="postgres:$PG_PASSWORD"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as_owner "$bindir/initdb" -D "$dir/data" -U postgres "${auth[@]}" -E UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || {
      echo "pg.sh: initdb failed, see $dir/initdb.log" >&2
      return 1
    }
  fi
  pg_private_run "$dir" "$bindir"
  rm -f "$dir/pwfile"
  # The socket directory, percent-encoded, is the host: libpq and tokio-postgres agree.
  echo "postgres://$userinfo@${dir//\//%2F}:5432/postgres"
}

# Starts the server of the cluster in DIR unless it runs: socket only, in DIR itself.
pg_private_run() {
  local dir=$1 bindir=$2
  if ! pg_as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    pg_as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p 5432 ${PG_EXTRA_OPTS:-}" \
      start >/dev/null || {
      echo "pg.sh: the private cluster did not start, see $dir/server.log" >&2
      return 1
    }
  fi
}

# Starts a streaming replica of the private cluster in PRIMARY (running, trust auth) in DIR
# and prints its URL. pg_basebackup -R copies the primary and writes standby.signal and
# primary_conninfo, so the copy follows the primary over the primary's socket.
pg_private_replica() {
  local primary=$1 dir=$2 bindir
  if ! bindir=$(pg_bindir); then
    pg_no_server_help
    return 1
  fi
  primary=$(cd "$primary" && pwd)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ ${#dir} -gt 90 ]; then
    echo "pg.sh: $dir is too long for a Unix socket path (90 characters at most)" >&2
    return 1
  fi
  [ "$(id -u)" -ne 0 ] || chown "$(pg_cluster_user)" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as_owner "$bindir/pg_basebackup" -D "$dir/data" -R -X stream -c fast \
      -h "$primary" -p 5432 -U postgres >"$dir/basebackup.log" 2>&1 || {
      echo "pg.sh: pg_basebackup from $primary failed, see $dir/basebackup.log" >&2
      return 1
    }
  fi
  pg_private_run "$dir" "$bindir"
  echo "postgres://postgres@${dir//\//%2F}:5432/postgres"
}

# Starts a pgbouncer in DIR in front of the private cluster in UPSTREAM, in MODE
# (transaction or session), on a Unix socket in DIR, and prints its URL. Trust auth, like the
# private clusters; the pool is POOL_SIZE server connections (default 10); PGB_EXTRA adds
# lines to the [pgbouncer] section (e.g. "server_round_robin = 1").
pg_bouncer_start() {
  local upstream=$1 dir=$2 mode=$3 bouncer
  if ! bouncer=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null); then
    echo "pg.sh: pgbouncer is not installed (Debian: apt-get install pgbouncer)" >&2
    return 1
  fi
  upstream=$(cd "$upstream" && pwd)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$upstream port=5432 user=postgres

[pgbouncer]
listen_addr =
listen_port = 6432
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = $mode
default_pool_size = ${POOL_SIZE:-10}
max_client_conn = 500
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = postgres
ignore_startup_parameters = extra_float_digits
${PGB_EXTRA:-}
INI
  echo '"postgres" ""' >"$dir/userlist.txt"
  [ "$(id -u)" -ne 0 ] || chown -R "$(pg_cluster_user)" "$dir"
  # pgbouncer refuses to run as root, as initdb does.
  pg_as_owner "$bouncer" -d "$dir/pgbouncer.ini" || {
    echo "pg.sh: pgbouncer did not start, see $dir/pgbouncer.log" >&2
    return 1
  }
  # Ready when it answers (pg_isready: 0 accepting, 1 rejecting, both mean it listens),
  # not merely when its socket file exists.
  local i bindir ready=
  bindir=$(pg_bindir) || bindir=
  for i in $(seq 200); do
    if [ -n "$bindir" ]; then
      local rc=0
      "$bindir/pg_isready" -q -h "$dir" -p 6432 -U postgres -d postgres -t 2 || rc=$?
      [ "$rc" -le 1 ] && ready=1
    elif [ -S "$dir/.s.PGSQL.6432" ]; then
      ready=1
    fi
    [ -n "$ready" ] && break
    sleep 0.05
  done
  if [ -z "$ready" ]; then
    echo "pg.sh: pgbouncer in $dir does not answer; its log:" >&2
    cat "$dir/pgbouncer.log" >&2 2>/dev/null
    return 1
  fi
  echo "postgres://postgres@${dir//\//%2F}:6432/postgres"
}

# Stops the pgbouncer started in DIR, if one runs there.
pg_bouncer_stop() {
  local pid
  pid=$(cat "$1/pgbouncer.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
}

# Stops the private cluster in DIR, if one runs there.
pg_private_stop() {
  local dir=$1 bindir
  bindir=$(pg_bindir) || return 0
  [ -f "$dir/data/PG_VERSION" ] || return 0
  pg_as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_auto_failover (Debian: postgresql-15-auto-failover, pg-auto-failover-cli): a monitor
# and three nodes on one machine, each its own cluster on a free TCP port under one
# directory. Everything pg_autoctl keeps (its config, state and pid files) stays under that
# directory too, through the XDG variables it reads: formations started side by side share
# nothing.

# How long a formation may take to become healthy, in seconds.
PAF_TIMEOUT=${PAF_TIMEOUT:-120}

# Runs pg_autoctl ARGS as the clusters' account with the formation in DIR's environment.
pg_autoctl_in() {
  local dir=$1
  shift
  pg_as_owner env "${pg_autoctl_env[@]/\%DIR%/$dir}" pg_autoctl "$@"
}

# What pg_autoctl reads from the environment, %DIR% standing for the formation's directory.
pg_autoctl_env=(XDG_CONFIG_HOME=%DIR%/config XDG_DATA_HOME=%DIR%/share
  XDG_RUNTIME_DIR=%DIR%/run PGHOST=%DIR%)

# Prints a TCP port on 127.0.0.1 that nothing listens on, picked at random so formations
# started at once rarely try the same one (a port taken in between makes its start fail).
pg_free_port() {
  local i port
  for i in $(seq 50); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "pg.sh: no free TCP port found" >&2
  return 1
}

# Waits up to the formation's deadline for COMMAND to succeed; on time out says WHAT was
# awaited and fails.
pg_formation_wait() {
  local what=$1
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$pg_formation_deadline" ]; then
      echo "pg.sh: $what within ${PAF_TIMEOUT}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# The formation's nodes, in the order they are created.
pg_formation_nodes=(node1 node2 node3)

# Prints what COMMAND prints once it succeeds with some output, retried up to the
# formation's deadline; on time out says WHAT was awaited and fails. pg_autoctl rewrites
# its config file in place while it starts, and a `show` that reads it halfway fails
# ("Failed to find section pg_autoctl"): its answers are taken this way, not once.
pg_formation_output() {
  local what=$1 out
  shift
  until out=$("$@" 2>/dev/null) && [ -n "$out" ]; do
    if [ "$SECONDS" -ge "$pg_formation_deadline" ]; then
      echo "pg.sh: $what within ${PAF_TIMEOUT}s" >&2
      return 1
    fi
    sleep 0.2
  done
  printf '%s\n' "$out"
}

# True when the formation in DIR has a primary and every other node secondary, each in its
# assigned state.
pg_formation_healthy() {
  local dir=$1
  pg_autoctl_in "$dir" show state --pgdata "$dir/monitor" 2>/dev/null | awk -F'|' -v nodes="${#pg_formation_nodes[@]}" '
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    NF >= 7 && trim($6) == trim($7) { seen[trim($6)]++ }
    END { exit !(seen["primary"] == 1 && seen["secondary"] == nodes - 1) }'
}

# An empty cluster in DIR for pg_autoctl to take over, with what it would choose otherwise
# changed: shared_buffers (it sizes them from the machine's memory, gigabytes for each of
# four servers) and the socket directory (the formation's own, not a shared one).
# postgresql.auto.conf wins over pg_autoctl's own settings file, and pg_basebackup copies it
# to the standby.
pg_formation_initdb() {
  local dir=$1 bindir=$2 root=$3
  pg_as_owner "$bindir/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$dir.initdb.log" 2>&1 || {
    echo "pg.sh: initdb failed, see $dir.initdb.log" >&2
    return 1
  }
  printf "shared_buffers = '32MB'\nunix_socket_directories = '%s'\n" "$root" |
    pg_as_owner tee -a "$dir/postgresql.auto.conf" >/dev/null
}

# Starts `pg_autoctl create ... --run` as a service of its own, in the background, its
# output in LOG.
pg_autoctl_service() {
  local dir=$1 log=$2
  shift 2
  # setsid: the service outlives this script and the signals sent to its caller's group,
  # as a server pg_ctl starts does.
  pg_as_owner setsid env "${pg_autoctl_env[@]/\%DIR%/$dir}" pg_autoctl "$@" --run \
    </dev/null >"$log" 2>&1 &
}

# Starts a pg_auto_failover formation in DIR (a monitor and three nodes, with
# number_sync_standbys = 1: every commit waits for one of the two standbys, and the monitor
# never turns synchronous replication off) and prints its URI, a host list with
# target_session_attrs=read-write. Stops everything it started if it fails.
pg_formation_start() {
  local dir=$1 bindir
  if ! command -v pg_autoctl >/dev/null 2>&1; then
    echo "pg.sh: pg_autoctl is not installed (Debian: apt-get install postgresql-15-auto-failover pg-auto-failover-cli)" >&2
    return 1
  fi
  if ! bindir=$(pg_bindir); then
    pg_no_server_help
    return 1
  fi
  if [ ! -f "$("$bindir/pg_config" --sharedir)/extension/pgautofailover.control" ]; then
    echo "pg.sh: the pgautofailover extension is not installed for $bindir (Debian: apt-get install postgresql-$("$bindir/pg_config" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')-auto-failover)" >&2
    return 1
  fi
  if [ -e "$dir/monitor" ]; then
    echo "pg.sh: $dir already holds a formation (pg.sh formation-stop $dir first)" >&2
    return 1
  fi
  dir=$(pg_prepare_dir "$dir" pg_autoctl) || return 1
  pg_formation_deadline=$((SECONDS + PAF_TIMEOUT))
  if ! pg_formation_create "$dir" "$bindir"; then
    local log
    for log in "$dir"/*.log; do
      [ -f "$log" ] || continue
      echo "--- $log (last lines)" >&2
      tail -n 15 "$log" >&2
    done
    pg_formation_stop "$dir"
    return 1
  fi
  pg_formation_output "the formation did not give its URI" \
    pg_autoctl_in "$dir" show uri --pgdata "$dir/monitor" --formation default
}

# The steps of pg_formation_start: the monitor, a first node (the primary), the standbys,
# then number_sync_standbys = 1, each waited for.
#
# Why three nodes and not two: with one standby, pg_auto_failover 2.0 chooses availability.
# When the standby is unhealthy, or is the one being promoted, the monitor moves the primary
# to wait_primary and turns synchronous replication off; in a race during `perform
# failover` (hapostgres/pg_auto_failover#774) the old primary then acknowledged writes that
# pg_rewind later discarded. With number_sync_standbys = 1 (which needs two standbys) the
# monitor keeps it on and blocks writes instead: the durable choice.
pg_formation_create() {
  local dir=$1 bindir=$2 common monitor_uri port node xdg
  common=(--pgctl "$bindir/pg_ctl" --hostname 127.0.0.1 --listen 127.0.0.1 --auth trust --no-ssl)
  # pg_autoctl makes these as it starts, and so does a `pg_autoctl show` run meanwhile:
  # two of them racing to make one fail with "File exists". Made first, they race no more.
  for node in monitor "${pg_formation_nodes[@]}"; do
    for xdg in config share run; do
      pg_as_owner mkdir -p "$dir/$xdg/pg_autoctl$dir/$node"
    done
  done

  port=$(pg_free_port) || return 1
  pg_as_owner mkdir "$dir/monitor"
  pg_formation_initdb "$dir/monitor" "$bindir" "$dir" || return 1
  pg_autoctl_service "$dir" "$dir/monitor.log" create monitor --pgdata "$dir/monitor" \
    --pgport "$port" "${common[@]}"
  pg_formation_wait "the monitor did not answer" "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" || return 1
  monitor_uri=$(pg_formation_output "the monitor did not give its URI" \
    pg_autoctl_in "$dir" show uri --pgdata "$dir/monitor" --formation monitor) || return 1

  # The first node registers alone ("single") before the others join as its standbys.
  port=$(pg_free_port) || return 1
  pg_as_owner mkdir "$dir/node1"
  pg_formation_initdb "$dir/node1" "$bindir" "$dir" || return 1
  pg_autoctl_service "$dir" "$dir/node1.log" create postgres --pgdata "$dir/node1" \
    --pgport "$port" --name node1 --monitor "$monitor_uri" "${common[@]}"
  pg_formation_wait "the first node did not become the primary" \
    pg_formation_state_is "$dir" node1 single || return 1

  # One at a time: two base backups at once on two cores slow both past the deadline.
  for node in "${pg_formation_nodes[@]:1}"; do
    port=$(pg_free_port) || return 1
    pg_autoctl_service "$dir" "$dir/$node.log" create postgres --pgdata "$dir/$node" \
      --pgport "$port" --name "$node" --monitor "$monitor_uri" "${common[@]}"
    pg_formation_wait "$node did not become a secondary" \
      pg_formation_state_is "$dir" "$node" secondary || return 1
  done
  pg_formation_wait "the formation did not reach a primary and its secondaries" \
    pg_formation_healthy "$dir" || return 1

  # What `pg_autoctl set formation number-sync-standbys 1` runs on the monitor. The command
  # itself is not used: 2.0 reads a stale errno after strtol and may refuse the "1".
  pg_as_owner "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -At "${monitor_uri/autoctl_node@/postgres@}" \
    -c "SELECT pgautofailover.set_formation_number_sync_standbys('default', 1)" \
    >>"$dir/monitor.log" 2>&1 || {
    echo "pg.sh: setting number_sync_standbys = 1 on the monitor failed, see $dir/monitor.log" >&2
    return 1
  }
  pg_formation_wait "the primary did not apply number_sync_standbys = 1" \
    pg_formation_sync "$dir" || return 1
  pg_formation_wait "the formation did not settle after number_sync_standbys = 1" \
    pg_formation_healthy "$dir"
}

# True when the monitor's settings for the formation in DIR have number_sync_standbys = 1.
pg_formation_sync() {
  local dir=$1
  pg_autoctl_in "$dir" show settings --pgdata "$dir/monitor" 2>/dev/null |
    grep -Eq '^ *formation *\| *default *\| *number_sync_standbys *\| *1 *$'
}

# True when NODE of the formation in DIR is in STATE, reported and assigned.
pg_formation_state_is() {
  local dir=$1 node=$2 state=$3
  pg_autoctl_in "$dir" show state --pgdata "$dir/monitor" 2>/dev/null | awk -F'|' -v node="$node" -v state="$state" '
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    trim($1) == node && trim($6) == state && trim($7) == state { found = 1 }
    END { exit !found }'
}

# Stops the formation in DIR (each pg_autoctl service and its Postgres) and removes DIR.
# Bounded: what has not stopped after a fast stop is killed.
pg_formation_stop() {
  local dir=$1 node pid i
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  local nodes=(node3 node2 node1 monitor)
  for node in "${nodes[@]}"; do
    [ -d "$dir/$node" ] || continue
    pg_autoctl_in "$dir" stop --pgdata "$dir/$node" --fast >/dev/null 2>&1 || true
  done
  for node in "${nodes[@]}"; do
    for i in $(seq 100); do
      pg_formation_pids "$dir" "$node" >/dev/null || break
      sleep 0.1
    done
    for pid in $(pg_formation_pids "$dir" "$node"); do
      kill -9 "$pid" 2>/dev/null || true
    done
  done
  rm -rf "$dir"
}

# Prints the pids still running for NODE of the formation in DIR: its pg_autoctl service
# (from its pid file) and its postmaster (from postmaster.pid); fails when there are none.
pg_formation_pids() {
  local dir=$1 node=$2 file pid found=1
  for file in "$dir/run/pg_autoctl$dir/$node/pg_autoctl.pid" "$dir/$node/postmaster.pid"; do
    pid=$(head -n 1 "$file" 2>/dev/null) || continue
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
      found=0
    fi
  done
  return $found
}

pg_no_server_help() {
  cat >&2 <<'MSG'
No PostgreSQL server found: DATABASE_URL is unset, nothing answers at 127.0.0.1:5432,
and PostgreSQL's server binaries (initdb, pg_ctl) are not installed. Either
  - set DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/DBNAME, or
  - install PostgreSQL: apt install postgresql | dnf install postgresql-server |
    brew install postgresql@16, then run this again.
MSG
}

# Prints the server URL of steps 1-2, or fails.
pg_resolve() {
  if [ "${PG_FORCE_PRIVATE:-0}" = 1 ]; then
    return 1
  fi
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "$DATABASE_URL"
  elif pg_answers 127.0.0.1 5432; then
    echo "postgres://postgres@127.0.0.1:5432/postgres"
  else
    return 1
  fi
}

# The project's default database name: Cargo.toml's package name with - as _.
pg_package_db() {
  awk -F'"' '/^\[/ { section = $0 } section == "[package]" && /^name *=/ { gsub(/-/, "_", $2); print $2; exit }' Cargo.toml
}

# For the project scripts: unless the arguments carry --url, DATABASE_URL is set or .env
# has it, exports DATABASE_URL for the server steps 1-2 find, with the project's database
# (pg_package_db). Never fails: without a server the binaries say themselves what is missing.
pg_default_url() {
  local arg server
  for arg in "$@"; do
    case "$arg" in --url | --url=*) return 0 ;; esac
  done
  if [ -n "${DATABASE_URL:-}" ] || grep -qs '^DATABASE_URL=' .env; then
    return 0
  fi
  if server=$(pg_resolve); then
    DATABASE_URL=$(pg_with_database "$server" "$(pg_package_db)")
    export DATABASE_URL
  fi
  return 0
}

# Replaces the database name of a URL (keeps any ?query).
pg_with_database() {
  local url=$1 name=$2 query=""
  case "$url" in *\?*) query="?${url#*\?}"; url=${url%%\?*} ;; esac
  local rest=${url#*://}
  case "$rest" in */*) url="${url%/*}" ;; esac
  echo "$url/$name$query"
}

# Masks the password of a URL for printing: in the user info, and as a `password=`
# parameter (any case), as db::mask does; also any parameter whose name is percent-encoded
# (drivers decode names, so `pass%77ord=` is a password too).
pg_mask() {
  sed -E -e 's#(://[^:/@]*):.*@#\1:***@#' \
    -e 's#(^|[^[:alnum:]_])([Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=)[^&[:space:]]*#\1\2***#g' \
    -e 's#([?&][^&=]*%[^&=]*=)[^&]*#\1***#g' <<<"$1"
}

# Sets $server: pg_resolve's answer, else a private throwaway cluster, stopped and deleted
# when the calling script exits (PG_EXTRA_OPTS passes it server settings).
pg_server_or_private() {
  if server=$(pg_resolve); then
    echo "==> PostgreSQL: $(pg_mask "$server")" >&2
    return 0
  fi
  pg_private_dir=$(mktemp -d /tmp/pg-run-XXXXXX)
  trap 'pg_private_stop "$pg_private_dir"; rm -rf "$pg_private_dir"' EXIT
  echo "==> no server: starting a private cluster in $pg_private_dir" >&2
  server=$(pg_private_start "$pg_private_dir")
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start) pg_private_start "${2:?usage: pg.sh start DIR}" ;;
    replica) pg_private_replica "${2:?usage: pg.sh replica PRIMARY_DIR DIR}" "${3:?usage: pg.sh replica PRIMARY_DIR DIR}" ;;
    stop) pg_private_stop "${2:?usage: pg.sh stop DIR}" ;;
    bouncer) pg_bouncer_start "${2:?usage: pg.sh bouncer UPSTREAM_DIR DIR MODE}" "${3:?usage: pg.sh bouncer UPSTREAM_DIR DIR MODE}" "${4:-transaction}" ;;
    bouncer-stop) pg_bouncer_stop "${2:?usage: pg.sh bouncer-stop DIR}" ;;
    formation) pg_formation_start "${2:?usage: pg.sh formation DIR}" ;;
    autoctl)
      dir=$(cd "${2:?usage: pg.sh autoctl DIR ARGS...}" && pwd)
      shift 2
      pg_autoctl_in "$dir" "$@" --pgdata "$dir/monitor"
      ;;
    formation-stop) pg_formation_stop "${2:?usage: pg.sh formation-stop DIR}" ;;
    url) pg_resolve || { pg_no_server_help; exit 1; } ;;
    *) sed -n '2,/^# Sourced/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
fi

# Builds the project's binary BIN, with cargo's progress on stderr (a first build takes
# minutes, and silence looks like a hang), then runs it with the remaining arguments.
# `cargo run` without --quiet would echo those arguments, a password among them.
pg_run_bin() {
  local bin=$1
  shift
  cargo build --bin "$bin" >&2
  exec cargo run --quiet --bin "$bin" -- "$@"
}
