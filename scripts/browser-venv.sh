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
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check selenium==4.38.0 >"$venv.install.log" 2>&1 || {
  tail -30 "$venv.install.log" >&2
  echo "browser: selenium install failed (log: $venv.install.log)" >&2
  exit 1
}
