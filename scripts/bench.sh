#!/usr/bin/env bash
# Release benchmark of the Resource Directory (issue 10 figures), optionally cross-checked with
# the independent Python load generator against a second, fresh gateway, and against aiocoap-rd
# (the reference RD) so the figures come from one run side by side.
#
#   scripts/bench.sh [--cross-check] [--compare] [--py-endpoints N] [--py-seconds S] [rd_bench args]
#
#   rd_bench args   passed to `cargo bench --bench rd_bench --` (e.g. --endpoints 100000 --seconds 5)
#   --cross-check   also run ../shared/bench/coap_rd_load.py --mode rd against a freshly started
#                   gateway (its own temporary data dir)
#   --compare       --cross-check, plus the same Python run against aiocoap-rd on [::1]
#   --py-endpoints  N for the Python runs (default 10000); --py-seconds S (default 5)
#
# Output: one JSON line per tool, in $BENCH_OUT (default a new temporary directory), and on stdout.
# Only loopback is used. Every started server is stopped by its pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CROSS=0
COMPARE=0
PY_N=10000
PY_SECONDS=5
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cross-check) CROSS=1 ;;
    --compare) CROSS=1; COMPARE=1 ;;
    --py-endpoints) PY_N="$2"; shift ;;
    --py-seconds) PY_SECONDS="$2"; shift ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done

OUT="${BENCH_OUT:-$(mktemp -d /tmp/rd-bench.XXXXXX)}"
mkdir -p "$OUT"
LOADGEN="$(pwd)/../shared/bench/coap_rd_load.py"
[ -f "$LOADGEN" ] || LOADGEN=/work/shared/bench/coap_rd_load.py
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r), $(date -u +%FT%TZ)" >&2
cargo build --release
echo "== rd_bench ${ARGS[*]:-}" >&2
cargo bench --bench rd_bench -- "${ARGS[@]}" | tee "$OUT/rd_bench.json"

# Wait (≤ 30 s) for a line matching $2 in file $1; print the first match.
wait_for_line() {
  local file="$1" pattern="$2" i
  for i in $(seq 1 300); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

if [ "$CROSS" = 1 ]; then
  GW_DIR="$(mktemp -d /tmp/rd-bench-gw.XXXXXX)"
  cat > "$GW_DIR/config.yaml" <<YAML
gateway:
  data_dir: $GW_DIR/data
  cache_mb: 32
rd:
  listen: ["127.0.0.1:0"]
http:
  listen: ""
YAML
  target/release/coap-gateway --config "$GW_DIR/config.yaml" 2> "$GW_DIR/gateway.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  LINE="$(wait_for_line "$GW_DIR/gateway.log" 'rd listening on udp://')" || { echo "gateway did not start" >&2; exit 1; }
  GW_PORT="${LINE##*:}"
  echo "== coap_rd_load.py vs coap-gateway (pid $GW_PID, port $GW_PORT), N=$PY_N" >&2
  python3 "$LOADGEN" --mode rd --endpoints "$PY_N" --inflight 32 --seconds "$PY_SECONDS" \
    --host 127.0.0.1 --port "$GW_PORT" --pid "$GW_PID" --label coap-gateway | tee "$OUT/py_gateway.json"
  kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
fi

if [ "$COMPARE" = 1 ]; then
  if ! command -v aiocoap-rd >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'aiocoap[linkheader,prettyprint,oscore,ws]==0.4.17'
    hash -r
  fi
  RD_PORT="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0)); print(s.getsockname()[1])')"
  AIOCOAP_SERVER_TRANSPORT=udp6 aiocoap-rd --bind "[::1]:$RD_PORT" 2> "$OUT/aiocoap-rd.log" &
  RD_PID=$!
  PIDS+=("$RD_PID")
  for i in $(seq 1 100); do
    ss -Huln "sport = :$RD_PORT" | grep -q . && break
    sleep 0.1
  done
  echo "== coap_rd_load.py vs aiocoap-rd (pid $RD_PID, [::1]:$RD_PORT), N=$PY_N" >&2
  python3 "$LOADGEN" --mode rd --endpoints "$PY_N" --inflight 32 --seconds "$PY_SECONDS" \
    --host ::1 --port "$RD_PORT" --pid "$RD_PID" --label aiocoap-rd | tee "$OUT/py_aiocoap_rd.json"
  kill -TERM "$RD_PID"; wait "$RD_PID" 2>/dev/null || true
fi
echo "== results in $OUT" >&2
