#!/usr/bin/env bash
# A Python venv with QuickFIX (the C++ FIX engine's Python bindings, built from PyPI's sdist:
# about 3.5 min on 2 cores the first time), used as a real FIX initiator in the tests.
#   scripts/quickfix-venv.sh DIR     creates or reuses DIR, prints nothing on success
set -euo pipefail
venv="${1:?usage: $0 VENV_DIR}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import quickfix" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check quickfix==1.16.0 >"$venv.install.log" 2>&1 || {
  tail -30 "$venv.install.log" >&2
  echo "quickfix: install failed (log: $venv.install.log)" >&2
  exit 1
}
