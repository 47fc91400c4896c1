#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the end-to-end tests against the embedded
# Kafka cluster, the macro's compile-error tests, doc tests, and a build of every example.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
