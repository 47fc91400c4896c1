#!/usr/bin/env bash
# A pinned Python environment, idempotent; prints the venv's python.
#
#   scripts/python-env.sh          the interop tests' venv (the seed's aiokafka) in target/venv
#   scripts/python-env.sh bench    the benchmark's venv (aiokafka, confluent-kafka, matplotlib)
#                                  in target/venv-bench
#
# PYTHON_VENV overrides the directory. Safe to run several times at once (tests running in
# parallel threads and binaries all reach it on first use): the work is done under a lock, and a
# venv left half-made by an interrupted run is made again.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-tests}" in
tests)
    VENV=${PYTHON_VENV:-$PWD/target/venv}
    REQUIREMENTS=tests/python/requirements.txt
    ;;
bench)
    VENV=${PYTHON_VENV:-$PWD/target/venv-bench}
    REQUIREMENTS=benches/python/requirements.txt
    ;;
*)
    echo "usage: $0 [tests|bench]" >&2
    exit 2
    ;;
esac

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

# The copy of the requirements is written last: it marks a venv that is complete.
if ! cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt"; then
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
fi
echo "$VENV/bin/python"
