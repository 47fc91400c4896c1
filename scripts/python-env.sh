#!/usr/bin/env bash
# The Python environment of the interop tests: a venv with the seed's client library (aiokafka),
# pinned. Idempotent; prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PYTHON_VENV:-$PWD/target/venv}
REQUIREMENTS=tests/python/requirements.txt

if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV" >&2
fi
if ! cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt"; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
fi
echo "$VENV/bin/python"
