#!/usr/bin/env bash
# A real Redis 7 for the speed-path tests, on 127.0.0.1, owned by this checkout.
#
#   scripts/redis.sh start     install (Debian redis-server) if needed, start, wait for PING
#   scripts/redis.sh stop      shutdown (the outage tests use stop/start mid-run)
#   scripts/redis.sh env       print EOD_REDIS_URL=... for the tests
#
# EOD_REDIS_DIR (default .eod/redis), EOD_REDIS_PORT (default 16379). Port +1 speaks TLS with
# a certificate from a private CA ($EOD_REDIS_DIR/tls/ca.pem, scripts/tls-certs.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${EOD_REDIS_DIR:-$root/.eod/redis}"
port="${EOD_REDIS_PORT:-16379}"
url="redis://127.0.0.1:$port"
tls_port=$((port + 1))
tls="$dir/tls"

install() {
  command -v redis-server >/dev/null && return
  echo "redis: installing redis-server from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
}

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

start() {
  install
  mkdir -p "$dir"
  if ping; then
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
      echo "redis: already running on $port"
      return
    fi
    echo "redis: port $port is taken by a server this directory did not start ($dir)" >&2
    exit 1
  fi
  "$root/scripts/tls-certs.sh" "$tls"
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$dir" \
    --appendonly yes --save '' --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --tls-port "$tls_port" --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" \
    --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no
  for _ in $(seq 1 100); do
    ping && { echo "redis: ready at $url"; return; }
    sleep 0.1
  done
  tail -20 "$dir/redis.log" >&2
  echo "redis: did not answer PING" >&2
  exit 1
}

stop() {
  ping || return 0
  redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    ping || return 0
    sleep 0.1
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env)
    echo "EOD_REDIS_URL=$url"
    echo "EOD_REDIS_TLS_URL=rediss://127.0.0.1:$tls_port"
    echo "EOD_REDIS_TLS_CA=$tls/ca.pem"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
