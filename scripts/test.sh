#!/usr/bin/env bash
# Runs every test of coap-gateway on a fresh Debian machine: installs the independent CoAP peers
# the interop tests drive (libcoap's coap-client, aiocoap) and headless Chromium for the status
# page test, then one release build and all tests.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v coap-client-notls >/dev/null 2>&1; then
  echo "== installing libcoap3-bin (coap-client-notls)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libcoap3-bin >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (headless, for the admin status page test)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v aiocoap-client >/dev/null 2>&1; then
  echo "== installing aiocoap"
  # The [all] extra fails to build its DTLS module here; these extras are what the tests need.
  python3 -m pip install --quiet --disable-pip-version-check 'aiocoap[linkheader,prettyprint,oscore,ws]==0.4.17'
  # Make the new console script reachable: pyenv needs its shims rehashed, and a user install
  # puts scripts in ~/.local/bin.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin"
  export PATH
  hash -r
  command -v aiocoap-client >/dev/null || { echo "aiocoap-client not found after install" >&2; exit 1; }
fi

# One release build serves the tests (they exercise the real binaries) and the benchmarks.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "$@"
else
  cargo test --release --no-fail-fast "$@"
fi
