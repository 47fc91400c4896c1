#!/usr/bin/env bash
# Installs what building and testing kafka-runtime needs on Debian: a C toolchain, make,
# pkg-config, zlib and OpenSSL for the librdkafka that rdkafka builds from source, socat (the TLS
# terminator in front of the test broker), and Python 3 with venv
# for the broker script and the seed's Python client. Idempotent: installs only what is missing.
set -euo pipefail

packages=(gcc g++ make pkg-config zlib1g-dev libssl-dev socat)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# Any working Python 3 with venv will do (pyenv's, Debian's, ...).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
