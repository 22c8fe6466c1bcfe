#!/usr/bin/env bash
# Jaeger v2 (an OpenTelemetry Collector distribution) for the trace-export test: receives OTLP
# on 127.0.0.1:4318 and answers trace queries on :16686, in memory. Built from the Go module
# proxy (about 3 minutes the first time; cached under $EOD_JAEGER_DIR after that).
#
#   scripts/jaeger.sh start     build if needed, start, wait for the OTLP and query ports
#   scripts/jaeger.sh stop
#   scripts/jaeger.sh env       print EOD_JAEGER_OTLP=... and EOD_JAEGER_QUERY=...
#
# EOD_JAEGER_DIR (default .eod/jaeger). Jaeger's all-in-one defaults fix the ports.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${EOD_JAEGER_DIR:-$root/.eod/jaeger}"
version=v1.76.0
bin="$dir/jaeger-$version"
pidfile="$dir/jaeger.pid"

build() {
  [ -x "$bin" ] && return
  command -v go >/dev/null || { echo "jaeger: Go is required" >&2; exit 1; }
  echo "jaeger: building $version from the Go module proxy"
  mkdir -p "$dir/module"
  (
    cd "$dir/module"
    [ -f go.mod ] || go mod init eod-jaeger >/dev/null 2>&1
    # A tool dependency of a throwaway module: `go install pkg@version` refuses modules
    # with replace directives, as Jaeger's has.
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version" >"$dir/build.log" 2>&1
    go build -o "$bin" github.com/jaegertracing/jaeger/cmd/jaeger >>"$dir/build.log" 2>&1
  ) || { tail -20 "$dir/build.log" >&2; echo "jaeger: build failed (log: $dir/build.log)" >&2; exit 1; }
  # The binary is kept; its 1.5 GB of compiler cache is not (CI disks are small).
  go clean -cache
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
open_port() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-start}" in
  start)
    if running; then echo "jaeger: already running"; exit 0; fi
    if open_port 4318 || open_port 16686; then
      echo "jaeger: port 4318 or 16686 is taken by a server this directory did not start" >&2
      exit 1
    fi
    build
    nohup "$bin" >"$dir/jaeger.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 120); do
      if open_port 4318 && open_port 16686; then echo "jaeger: ready"; exit 0; fi
      running || { tail -20 "$dir/jaeger.log" >&2; echo "jaeger: exited" >&2; exit 1; }
      sleep 0.5
    done
    echo "jaeger: ports did not open in 60 s" >&2; exit 1
    ;;
  stop)
    if running; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 1 40); do running || break; sleep 0.25; done
    fi
    rm -f "$pidfile"
    ;;
  env)
    echo "EOD_JAEGER_OTLP=http://127.0.0.1:4318"
    echo "EOD_JAEGER_QUERY=127.0.0.1:16686"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
