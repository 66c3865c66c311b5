#!/usr/bin/env bash
# Gateway overhead in sealed mode: a one-node devnet, sealed requests straight to the
# node vs through the validator's gateway to that node, 8 connections, interleaved
# rounds (crates/client/examples/gateway_load.rs). Prints a markdown table and the
# median ratio, then the CPU each process spent per request on either path. Not a test.
#   SECONDS_PER_RUN=8 CONNECTIONS=8 ROUNDS=3 bench/gateway.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/lockfile restore
cargo build --release -q -p attesta-cli
cargo build --release -q -p attesta-client --example gateway_load
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work=$(mktemp -d)
# No per-client rate limit in the way of the measurement.
"$bin/attesta" devnet --nodes 1 --interval 1s --gateway-rate 1000000 --dir "$work" > "$work/devnet.out" 2>&1 &
devnet=$!
trap 'kill "$devnet" 2>/dev/null; wait "$devnet" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do [ -f "$work/devnet.json" ] && break; sleep 0.1; done
[ -f "$work/devnet.json" ] || { echo "devnet did not start" >&2; cat "$work/devnet.out" >&2; exit 1; }
read -r gateway node cid root_pem < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["gateway"], d["nodes"][0]["url"], d["models"][0], d["dev_root"])' "$work/devnet.json")
# The gateway routes only to nodes a round has verified.
for _ in $(seq 1 300); do
  curl -sf "$gateway/v1/nodes" | python3 -c 'import json,sys; sys.exit(0 if any(n["score"] > 0 for n in json.load(sys.stdin)["nodes"]) else 1)' && break
  sleep 0.2
done
vpid=$(pgrep -f -- "--config $work/validator.toml" | head -1 || true)
npid=$(pgrep -f -- "--data-dir $work/node-0 " | head -1 || true)
GATEWAY_LOAD_PIDS="node=$npid validator=$vpid" "$bin/examples/gateway_load" "$gateway" "$node" "$cid" "$root_pem" \
  "${SECONDS_PER_RUN:-8}" "${CONNECTIONS:-8}" "${ROUNDS:-3}"
