#!/usr/bin/env bash
# A pinned Python environment, idempotent; prints the venv's python.
#
#   scripts/python-env.sh          the interop tests' venv (the seed's aiokafka) in target/venv
#   scripts/python-env.sh bench    the benchmark's venv (aiokafka, confluent-kafka, matplotlib)
#                                  in target/venv-bench
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-tests}" in
tests)
    VENV=${PYTHON_VENV:-$PWD/target/venv}
    REQUIREMENTS=tests/python/requirements.txt
    ;;
bench)
    VENV=$PWD/target/venv-bench
    REQUIREMENTS=benches/python/requirements.txt
    ;;
*)
    echo "usage: $0 [tests|bench]" >&2
    exit 2
    ;;
esac

if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV" >&2
fi
if ! cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt"; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
fi
echo "$VENV/bin/python"
