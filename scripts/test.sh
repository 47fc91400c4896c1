#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, then the end-to-end tests twice: against
# the embedded mock cluster, and against a real Kafka-protocol broker (tansu, started and stopped
# here by scripts/broker.sh; or the cluster at KAFKA_BOOTSTRAP_SERVERS if set). The transaction
# tests' second run is on the transaction-capable tansu build (`scripts/broker.sh start-txn`), or
# on that cluster. Ends with one line that sums every test binary's result.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The example, scale-out and reliability tests run target/debug/examples/* as a user would. The
# benchmark is built and smoke-run (tiny count) by `cargo test --all-targets` below.
cargo build --workspace --examples --locked

log=$(mktemp)
cleanup() { rm -f "$log"; }
trap cleanup EXIT

echo "== pass 1: unit, doc, macro and end-to-end tests against the embedded mock cluster"
env -u KAFKA_BOOTSTRAP_SERVERS cargo test --workspace --doc --locked 2>&1 | tee "$log"
env -u KAFKA_BOOTSTRAP_SERVERS cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"

if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    bootstrap=$KAFKA_BOOTSTRAP_SERVERS
    backend="the cluster at $bootstrap"
else
    bootstrap=$(scripts/broker.sh start)
    backend="tansu $(scripts/broker.sh version) at $bootstrap"
    transactional=$(BROKER_DIR=target/broker-txn scripts/broker.sh start-txn)
    cleanup() {
        scripts/broker.sh stop
        BROKER_DIR=target/broker-txn scripts/broker.sh stop
        rm -f "$log"
    }
fi
echo "== pass 2: end-to-end tests against $backend"
KAFKA_BOOTSTRAP_SERVERS=$bootstrap cargo test -p tests --locked \
    --test listener --test template --test startup --test errors --test interop --test scale_out \
    --test management --test service --test security --test faults --test container --test batch --test parallel \
    --test replies --test control --test intercept --test events --test positions --test dedupe 2>&1 | tee -a "$log"
echo "== pass 2: transactions against ${transactional:+the transaction-capable tansu at }${transactional:-$bootstrap}"
KAFKA_BOOTSTRAP_SERVERS=${transactional:-$bootstrap} cargo test -p tests --locked --test transactions 2>&1 | tee -a "$log"

awk '/^test result:/ { passed += $4; failed += $6 } END { printf "total: %d passed, %d failed\n", passed, failed }' "$log"
