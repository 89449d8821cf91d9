#!/usr/bin/env bash
# The code checks, run by CI before the tests (and by pre-commit before each commit):
# ruff's lint rules and format, mypy on src, and the package layers (import-linter
# contract in pyproject.toml: a package imports only those below it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" check src tests benchmarks tools
"$bin/ruff" format --check src tests benchmarks tools
"$bin/mypy"
"$bin/lint-imports"
