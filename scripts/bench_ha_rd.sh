#!/usr/bin/env bash
# The RD benchmark (benches/rd_bench) against a replica on etcd (issue 22): a three-member
# etcd cluster on loopback ports in a temporary directory, one coap-gateway with
# `registry.backend: etcd` on it, then `rd_bench --target` on that gateway. Everything stops
# when the script ends. Usage: scripts/bench_ha_rd.sh [rd_bench arguments]
# (default: --endpoints 10000 --checkpoints 10000 --no-restart).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin coap-gateway >&2
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 10 + i))"; done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "http://127.0.0.1:$((base + i))" \
    --advertise-client-urls "http://127.0.0.1:$((base + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "bench-$base" >"$dir/m$i.log" 2>&1 &
  pids+=($!)
done
endpoints="\"http://127.0.0.1:$base\", \"http://127.0.0.1:$((base + 1))\", \"http://127.0.0.1:$((base + 2))\""
cat >"$dir/config.yaml" <<YAML
gateway:
  id: bench
  data_dir: $dir/data
rd:
  listen: ["127.0.0.1:0"]
registry:
  backend: etcd
  etcd:
    endpoints: [$endpoints]
    prefix: /bench
    member_name: bench-a
YAML
RUST_LOG=info target/release/coap-gateway --config "$dir/config.yaml" >"$dir/gateway.log" 2>&1 &
gw=$!
pids+=($gw)
addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/.*rd listening on udp:\/\/\([0-9.:]*\).*/\1/p' "$dir/gateway.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$dir/gateway.log" >&2; exit 1; }
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--endpoints 10000 --checkpoints 10000 --no-restart)
cargo bench --bench rd_bench -- --target "$addr" --pid "$gw" "${args[@]}"
