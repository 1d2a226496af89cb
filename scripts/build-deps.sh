#!/usr/bin/env bash
# What building coap-gateway needs beyond the Rust toolchain on a fresh Debian machine:
# OpenSSL's headers and pkg-config, for CoAP over DTLS (the `openssl` crate links the system
# libssl 3), and protoc for etcd-client. Installs them only when missing. The README's set-up, scripts/test.sh and .ci/run
# call it.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl; then
  echo "== installing libssl-dev and pkg-config (CoAP over DTLS links the system OpenSSL)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "== installing protobuf-compiler (etcd-client builds the etcd v3 API from its .proto files)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
