#!/usr/bin/env bash
# reelfeat on a fresh machine, two commands:
#   ./run.sh demo   set up, then run the whole pipeline on the embedded demo data (dvc repro)
#   ./run.sh test   set up, then run the linter and the test suite
# Setup: a virtual environment in .venv with the pinned requirements (reinstalled only when a requirements
# file changes; PyAV's wheel carries the FFmpeg libraries reelfeat decodes with). For tests also system
# ffmpeg, the independent reference the decoding tests compare against, and chromium (apt-get, when missing).
set -euo pipefail
cd "$(dirname "$0")"

install_ffmpeg() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && return
  echo "run.sh: installing system ffmpeg with apt-get (the tests' reference decoder)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg >/dev/null
}

install_chromium() {  # tests only: the report test screenshots the page headless, and skips without it
  command -v chromium >/dev/null && return
  echo "run.sh: installing chromium with apt-get (for the report's screenshot test)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; } ||
    echo "run.sh: chromium could not be installed; the screenshot test will skip" >&2
}

python_311() {
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "run.sh: reelfeat needs Python 3.11 or newer on PATH" >&2
  exit 1
}

setup_venv() {  # $1: requirements file
  [ -x .venv/bin/python ] || "$(python_311)" -m venv .venv
  local stamp=.venv/.requirements.sha256
  local want
  want=$(cat "$1" requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$1"
    .venv/bin/python -m pip install -q --no-deps -e .  # the `reelfeat` command, running this checkout
    echo "$want" >"$stamp"
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate  # so `python` in dvc.yaml commands is this environment's
}

case "${1:-}" in
  demo)
    setup_venv requirements.txt
    dvc repro
    ;;
  test)
    install_ffmpeg
    install_chromium
    setup_venv requirements-dev.txt
    ruff check .
    python -m pytest -n auto --maxprocesses 4 --no-loadscope-reorder  # parallel by module: tests/conftest.py
    ;;
  *)
    echo "usage: ./run.sh demo | ./run.sh test" >&2
    exit 2
    ;;
esac
