#!/usr/bin/env bash
# Headless Chromium (Debian) and a Python venv with Selenium to drive it: the dashboard test's
# real browser.
#   scripts/browser-venv.sh DIR     installs Chromium if missing, creates or reuses DIR
set -euo pipefail
venv="${1:?usage: $0 VENV_DIR}"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "browser: chromium and chromium-driver are missing and installing them needs root" >&2
    exit 1
  fi
  echo "browser: installing chromium and chromium-driver (Debian)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
"$(dirname "$0")/pip-venv.sh" "$venv" selenium==4.38.0
