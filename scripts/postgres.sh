#!/usr/bin/env bash
# A real PostgreSQL 15 for the books tests, on 127.0.0.1, owned by this checkout.
#
#   scripts/postgres.sh start     install (Debian postgresql-15) if needed, initdb, start, create db
#   scripts/postgres.sh stop      fast shutdown (the outage tests use stop/start mid-run)
#   scripts/postgres.sh env       print EOD_POSTGRES_URL=... for the tests
#
# EOD_POSTGRES_DIR (default .eod/postgres), EOD_POSTGRES_PORT (default 15432). TLS is on, with
# a certificate from a private CA ($EOD_POSTGRES_DIR/tls/ca.pem, scripts/tls-certs.sh):
# clients ask for it with sslmode=require&sslrootcert=.../ca.pem.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${EOD_POSTGRES_DIR:-$root/.eod/postgres}"
port="${EOD_POSTGRES_PORT:-15432}"
bin=/usr/lib/postgresql/15/bin
url="postgres://postgres@127.0.0.1:$port/eod"
tls="$dir/tls"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  [ -x "$bin/pg_ctl" ] && return
  echo "postgres: installing postgresql-15 from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql-15 >/dev/null
}

start() {
  install
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >"$dir/initdb.log"
  fi
  "$root/scripts/tls-certs.sh" "$tls"
  [ "$(id -u)" = 0 ] && chown -R postgres "$tls"
  if as_postgres "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "postgres: already running on $port"
  else
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c ssl=on \
          -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key" start >/dev/null
  fi
  if ! as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'eod'" | grep -q 1; then
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres eod
  fi
  echo "postgres: ready at $url"
}

stop() {
  [ -f "$dir/data/PG_VERSION" ] || return 0
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env)
    echo "EOD_POSTGRES_URL=$url"
    echo "EOD_POSTGRES_TLS_CA=$tls/ca.pem"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
