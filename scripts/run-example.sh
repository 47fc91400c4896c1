#!/usr/bin/env bash
# Runs the seed's user-events service. Without kafka.bootstrap-servers (application.toml) or
# KAFKA_BOOTSTRAP_SERVERS it starts an embedded Kafka and produces the seed's sample events to it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
exec cargo run --locked --example user-events
