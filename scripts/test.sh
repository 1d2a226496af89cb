#!/usr/bin/env bash
# Runs every test of coap-gateway on a fresh Debian machine: installs the independent CoAP peers
# the interop tests drive (libcoap's coap-client, aiocoap), headless Chromium for the status page
# tests and chromedriver for the browser tests, then one release build and all tests.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

./scripts/build-deps.sh
if ! command -v coap-client-notls >/dev/null 2>&1; then
  echo "== installing libcoap3-bin (coap-client-notls)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libcoap3-bin >/dev/null
fi
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "== installing etcd-server and etcd-client (the tests start their own etcd clusters on loopback)"
  $SUDO apt-get update -qq
  # The tests run their own members on free ports; a service the package may start listens on
  # 2379/2380, which they never use.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (headless, for the admin status page test)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium-driver (chromedriver: the browser tests drive Chromium over WebDriver)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium-driver >/dev/null
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

if ! command -v curl >/dev/null 2>&1; then
  echo "== installing curl (the README walkthrough test runs the README's curl examples)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl >/dev/null
fi
if ! command -v ip >/dev/null 2>&1 || ! command -v unshare >/dev/null 2>&1; then
  echo "== installing iproute2 and util-linux (network and mount namespaces for the multicast, DNS-SD and disk-full tests)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 util-linux >/dev/null
fi

# A test that cannot run must not pass silently (tests/common/skip.rs): every skip is recorded
# in this file and listed below; under CI (or with COAP_GATEWAY_NO_SKIPS already set) a skip is a
# failure instead, so CI proves that the namespace, IPv6 and interop tests really ran.
SKIP_LOG="$(mktemp -t coap-gateway-skips.XXXXXX)"
export COAP_GATEWAY_SKIP_LOG="$SKIP_LOG"
if [ -n "${CI:-}" ]; then
  export COAP_GATEWAY_NO_SKIPS=1
  # The namespace tests need root (ip netns, unshare -m): say so now rather than in 20 failures.
  if [ "$(id -u)" -ne 0 ]; then
    echo "CI needs root for the network and mount namespace tests (ip netns, unshare -m)" >&2
    exit 1
  fi
  if ! ip netns add cgw-ci-probe-$$ 2>/dev/null; then
    echo "CI cannot create network namespaces (ip netns add failed): the multicast tests cannot run" >&2
    exit 1
  fi
  ip netns del cgw-ci-probe-$$
fi

# One release build serves the tests (they exercise the real binaries) and the benchmarks.
status=0
RUN_LOG="$(mktemp -t coap-gateway-run.XXXXXX)"
set +e
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "$@" 2>&1 | tee "$RUN_LOG"
  status=${PIPESTATUS[0]}
else
  cargo test --release --no-fail-fast "$@" 2>&1 | tee "$RUN_LOG"
  status=${PIPESTATUS[0]}
fi
# nextest does not run doctests: the link-format crate's examples (its lib.rs and README).
if ! cargo test --release --doc -p link-format 2>&1 | tee -a "$RUN_LOG.doc" | tail -3; then
  status=1
fi
if ! grep -q "test result: ok" "$RUN_LOG.doc"; then
  status=1
fi
rm -f "$RUN_LOG.doc"
set -e

early=$(wc -l < "$SKIP_LOG" | tr -d ' ')
echo "== tests that returned early because something was missing: $early"
if [ "$early" -gt 0 ]; then
  sed 's/^/   skipped: /' "$SKIP_LOG"
fi
if [ -n "${COAP_GATEWAY_NO_SKIPS:-}" ] && [ "$early" -gt 0 ]; then
  status=1
fi
# nextest counts an early return as a pass; the closing line counts it as what it was.
summary=$(grep -E "Summary \[" "$RUN_LOG" | tail -1 || true)
if [ -n "$summary" ]; then
  passed=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
  failed=$(echo "$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
  ignored=$(echo "$summary" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
  passed=$(( ${passed:-0} - early ))
  echo "tests: ${passed} passed, ${failed:-0} failed, $(( ${ignored:-0} + early )) skipped"
else
  # cargo test's fallback: one "test result:" line per test binary.
  read -r passed failed ignored < <(grep -E "^test result:" "$RUN_LOG" |
    sed -nE 's/.* ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' |
    awk '{p+=$1; f+=$2; i+=$3} END {print p+0, f+0, i+0}')
  echo "tests: $(( passed - early )) passed, ${failed} failed, $(( ignored + early )) skipped"
fi
rm -f "$SKIP_LOG" "$RUN_LOG"
exit "$status"
