#!/usr/bin/env bash
# Start or stop a private PostgreSQL (its own data dir, log and Unix socket under DIR,
# no TCP at all), never the system cluster.
#   ci/postgres.sh start DIR   -> prints the tokio-postgres URL of database `roost`
#   ci/postgres.sh stop DIR
# Installs Debian's `postgresql` package if no server is installed. As root, the
# server runs as user `postgres` (initdb refuses root), so DIR's parents must be
# traversable by that user.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: postgres.sh start|stop DIR}")
data="$dir/data"
sock="$dir/sock"
log="$dir/log"

# The newest installed server's bin dir (Debian: /usr/lib/postgresql/VERSION/bin).
pg_bin() {
  local d best=""
  while read -r d; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && best=$d
  done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V)
  [[ -n $best ]] && echo "$best"
}

# Clusters of the system's postgresql-common that are running, as `VERSION NAME`.
online_clusters() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1, $2 }' || true
}

install_pg() {
  echo "postgres.sh: no PostgreSQL server installed; installing Debian's postgresql" >&2
  local before now
  before=$(online_clusters)
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends postgresql >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  # The package may create and start a `main` cluster. We never use it: stop what the
  # install started, leave alone what ran before.
  now=$(online_clusters)
  while read -r ver name; do
    [[ -n $ver ]] || continue
    if ! grep -qxF "$ver $name" <<<"$before"; then
      echo "postgres.sh: stopping the system cluster $ver/$name the install started" >&2
      pg_ctlcluster "$ver" "$name" stop >&2 || true
    fi
  done <<<"$now"
}

# Run a server tool as the user that owns the cluster.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Percent-encode everything but unreserved URL characters (the socket dir is the
# URL's host).
urlencode() {
  local s=$1 out="" c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
    [A-Za-z0-9._~-]) out+=$c ;;
    *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  echo "$out"
}

running() {
  [[ -f $data/postmaster.pid ]] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

case "$cmd" in
start)
  bin=$(pg_bin) || { install_pg; bin=$(pg_bin) || true; }
  if [[ -z $bin ]]; then
    echo "postgres.sh: no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing" >&2
    exit 1
  fi
  # The server's socket file is $sock/.s.PGSQL.5432; Unix socket paths are limited to
  # 107 bytes.
  if ((${#sock} + 16 > 107)); then
    echo "postgres.sh: $sock is too long for a Unix socket path; use a shorter DIR" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "postgres.sh: running as root needs the user postgres (Debian's package creates it)" >&2
      exit 1
    fi
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "postgres.sh: user postgres cannot reach $dir: a parent directory is private" \
        "(mktemp -d makes 0700 dirs; chmod 755 it)" >&2
      exit 1
    fi
  fi
  url="postgresql://postgres@$(urlencode "$sock")/roost"
  if ! running; then
    if [[ ! -f $data/PG_VERSION ]]; then
      rm -rf "$data" # a half-made one from an interrupted initdb
      as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C >&2
      # Settings in the cluster's own file, so a restart by hand keeps them.
      cat >>"$data/postgresql.conf" <<CONF

# ci/postgres.sh: a private server on a Unix socket only, durable commits.
listen_addresses = ''
unix_socket_directories = '$sock'
fsync = on
synchronous_commit = on
CONF
    fi
    as_pg mkdir -p "$sock"
    as_pg chmod 700 "$sock"
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >&2; then
      echo "postgres.sh: PostgreSQL did not start; see $log" >&2
      tail -20 "$log" >&2 || true
      exit 1
    fi
  fi
  if ! as_pg "$bin/psql" -h "$sock" -U postgres -d postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = 'roost'" | grep -qx 1; then
    as_pg "$bin/createdb" -h "$sock" -U postgres roost >&2
  fi
  echo "$url"
  ;;
stop)
  [[ -f $data/postmaster.pid ]] || exit 0
  bin=$(pg_bin) || { echo "postgres.sh: no pg_ctl found to stop $data" >&2; exit 1; }
  if running; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
  fi
  ;;
*) echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
