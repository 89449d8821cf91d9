#!/usr/bin/env bash
# Set up cordmap on a fresh machine: system packages, a virtual environment in .venv,
# and the package with its test dependencies. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's chromium runs the browser test of the viewer (tests/test_browser.py)
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt pins torch==2.13.0 (any other version pulls gigabytes of CUDA packages)
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[all,test]"
echo "cordmap is set up in .venv ($(.venv/bin/cordmap --version))"
