#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the end-to-end tests against the embedded
# Kafka cluster, the example service run as a user runs it, the macro's compile-error tests and
# the doc tests. Ends with one line that sums every test binary's result.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The example test runs target/debug/examples/user-events as a user would.
cargo build --workspace --examples --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --doc --locked 2>&1 | tee "$log"
cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "total: %d passed, %d failed\n", passed, failed }' "$log"
