#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Python 3.11: a virtualenv in .venv with Parley
# and (with --test) its test dependencies, the web client's npm packages, and, when running as
# root, the Debian packages the project needs (CJK font for agreements; chromium for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: apt-get install ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install with apt: ${missing[*]} (not root, skipping)" >&2
  fi
}

apt_install fonts-noto-cjk
if ((WANT_TEST)); then
  command -v chromium >/dev/null || apt_install chromium
  command -v redis-server >/dev/null || apt_install redis-server
  # TURN and deployment tests (tests/integration/turn, tests/integration/deploy): real coturn,
  # nginx with its stream module (the shared port 443), and nftables for the namespace whose
  # firewall drops UDP
  apt_install coturn nginx libnginx-mod-stream nftables
  # pdftotext: the agreement tests read the PDF as a reader's tools do
  command -v pdftotext >/dev/null || apt_install poppler-utils
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
stamp=.venv/.parley-installed$WANT_TEST
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  if ((WANT_TEST)); then .venv/bin/pip install -q -e '.[test]'; else .venv/bin/pip install -q -e .; fi
  touch "$stamp"
fi
if [[ -f web/package.json ]] && command -v npm >/dev/null; then
  if [[ ! -d web/node_modules || web/package.json -nt web/node_modules ]]; then
    (cd web && { [[ -f package-lock.json ]] && npm ci --silent --no-audit --no-fund || npm install --silent --no-audit --no-fund; }) >&2
    touch web/node_modules
  fi
fi
