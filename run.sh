#!/usr/bin/env bash
# Face-attribute aggregation service: one entry point for users, tests and CI.
#
#   ./run.sh            install, start the stack, process images/ into output/, serve until Ctrl-C
#   ./run.sh serve      install, start the stack and serve until Ctrl-C (no batch)
#   ./run.sh test [...] install, then run the test suite (extra arguments go to pytest)
#   ./run.sh client ... the command-line client (python -m grpc_facade.client; --help for more)
#   ./run.sh setup      install only: virtual environment, requirements, gRPC stubs
#   ./run.sh --help     this text
#
# Configuration is by environment variables (REDIS_URL, GRPC_PORT, FLOWER_PORT, OUTPUT_DIR,
# IMAGES_DIR, ...); see README.md.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "run.sh: Python 3.11 or newer is required" >&2; return 1
}

# install FILE: pip-install a requirements file unless it (and requirements.txt) did not
# change since the last successful install of it.
install() {
  local file="$1" stamp="$VENV/.${1%.txt}.sha256" want
  want="$(cat "$file" requirements.txt | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "run.sh: installing $file" >&2
    "$PY" -m pip install --disable-pip-version-check -q --upgrade pip
    "$PY" -m pip install --disable-pip-version-check -q -r "$file"
    echo "$want" > "$stamp"
  fi
}

setup() {
  if [ ! -x "$PY" ]; then
    echo "run.sh: creating the virtual environment in $VENV" >&2
    "$(find_python)" -m venv "$VENV"
  fi
  install requirements.txt
  # The gRPC stubs are generated, never edited or committed.
  "$PY" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. proto/image_processing.proto
}

# What the tests need beyond Python packages: Chromium, for the Flower page test.
test_setup() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing Debian's chromium for the Flower test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "run.sh: the Flower test needs Chromium: install it (e.g. sudo apt-get install chromium)" >&2
  fi
}

command="${1:-batch}"
[ $# -gt 0 ] && shift
case "$command" in
  batch) setup; exec "$PY" -m grpc_facade.stack batch "$@" ;;
  serve) setup; exec "$PY" -m grpc_facade.stack serve "$@" ;;
  test)  setup; install requirements-test.txt; test_setup; exec "$PY" -m pytest "$@" ;;
  client) setup; exec "$PY" -m grpc_facade.client "$@" ;;
  setup) setup ;;
  -h|--help|help) usage ;;
  *) echo "run.sh: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac
