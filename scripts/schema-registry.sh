#!/usr/bin/env bash
# A real Schema Registry for the integration tests: Apicurio Registry (Confluent-compatible API)
# on 127.0.0.1, built from Maven Central by scripts/schema-registry/pom.xml, in-memory storage
# (a restart forgets every schema; the suite starts it once).
#
#   scripts/schema-registry.sh start   build if needed, start, wait until ready
#   scripts/schema-registry.sh stop
#   scripts/schema-registry.sh env     print EOD_TEST_SCHEMA_REGISTRY_URL=... for the tests (not
#                                      EOD_SCHEMA_REGISTRY_URL, which would turn the registry on
#                                      for every eod process a test starts)
#
# EOD_SCHEMA_REGISTRY_DIR (default .eod/schema-registry), EOD_SCHEMA_REGISTRY_PORT (default 18081).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/pidfile.sh
. "$root/scripts/lib/pidfile.sh"
dir="${EOD_SCHEMA_REGISTRY_DIR:-$root/.eod/schema-registry}"
port="${EOD_SCHEMA_REGISTRY_PORT:-18081}"
pidfile="$dir/registry.pid"
build="$dir/build"
runner="$build/target/eod-test-schema-registry-0-runner.jar"
url="http://127.0.0.1:$port/apis/ccompat/v6"

# Quarkus' build step packages the registry module and its dependencies (about 100 MB of jars,
# 2 minutes the first time).
package() {
  [ -f "$build/.complete" ] && return
  command -v mvn >/dev/null || { echo "schema-registry: Maven (mvn) is required" >&2; exit 1; }
  rm -rf "$build"
  mkdir -p "$build"
  cp -r "$root/scripts/schema-registry/." "$build/"
  echo "schema-registry: building Apicurio Registry from Maven Central"
  if ! mvn -B -q --no-transfer-progress -f "$build/pom.xml" package >"$dir/maven.log" 2>&1; then
    tail -30 "$dir/maven.log" >&2
    echo "schema-registry: build failed (log: $dir/maven.log)" >&2
    exit 1
  fi
  touch "$build/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

wait_ready() {
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then return 0; fi
    running || { echo "schema-registry: exited; see $dir/registry.out" >&2; tail -20 "$dir/registry.out" >&2; exit 1; }
    sleep 0.5
  done
  echo "schema-registry: not ready on port $port in 60 s" >&2; exit 1
}

case "${1:-start}" in
  start)
    if running; then echo "EOD_TEST_SCHEMA_REGISTRY_URL=$url"; exit 0; fi
    package
    HTTP_PORT="$port" nohup java -Xms64m -Xmx512m -Dquarkus.http.host=127.0.0.1 \
      -jar "$runner" >"$dir/registry.out" 2>&1 &
    echo $! >"$pidfile"
    wait_ready
    echo "EOD_TEST_SCHEMA_REGISTRY_URL=$url"
    ;;
  stop) stop_pidfile "$pidfile" ;;
  env) echo "EOD_TEST_SCHEMA_REGISTRY_URL=$url" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
