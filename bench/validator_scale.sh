#!/usr/bin/env bash
# Scale benchmark of the validator (not a test): one validator process
# against N lightweight simulated dev-TEE nodes served by a second process on
# 127.0.0.1. Reports round wall time and the validator's CPU time per node
# check (attestation verification + sealing + opening + receipt check + the
# validator's own expected answer), first with all nodes honest, then with
# one hanging node to show the round is bounded by the timeout, not N.
#
# Usage: bench/validator_scale.sh [NODES=256] [ROUNDS=5] [TIMEOUT_MS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-256}
ROUNDS=${2:-5}
TIMEOUT_MS=${3:-2000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p attesta-validator --example scale
BIN="$CARGO_TARGET_DIR/release/examples/scale"
WORK=$(mktemp -d)
NODES_PID=""
cleanup() {
  if [ -n "$NODES_PID" ]; then kill "$NODES_PID" 2>/dev/null || true; wait "$NODES_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

run() { # $1 = hanging nodes
  rm -f "$WORK/nodes.json"
  "$BIN" nodes "$WORK" "$NODES" "$1" &
  NODES_PID=$!
  for _ in $(seq 1 300); do [ -s "$WORK/nodes.json" ] && break; sleep 0.1; done
  [ -s "$WORK/nodes.json" ] || { echo "nodes did not start" >&2; exit 1; }
  echo "== $NODES nodes, $1 hanging, $(nproc) cores"
  "$BIN" validator "$WORK" "$ROUNDS" "$TIMEOUT_MS"
  kill "$NODES_PID"; wait "$NODES_PID" 2>/dev/null || true; NODES_PID=""
}
run 0
run 1
