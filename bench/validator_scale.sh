#!/usr/bin/env bash
# Scale benchmark of the validator (not a test): one validator process
# against N lightweight simulated dev-TEE nodes served by a second process on
# 127.0.0.1. Reports round wall time and the validator's CPU time per node
# check (attestation verification + sealing + opening + receipt check + the
# validator's own expected answer), first with all nodes honest, then with
# one hanging node to show the round is bounded by the timeout, not N.
# With MODE=axon (or both, the default) the same nodes are also reached
# through N Bittensor axons (one hotkey each, strict signature/nonce checks)
# by the validator's dendrite: the fan-out the issue asks for, with the
# ratio against direct HTTP printed at the end.
#
# Usage: bench/validator_scale.sh [NODES=256] [ROUNDS=5] [TIMEOUT_MS=2000] [MODE=both|http|axon]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-256}
ROUNDS=${2:-5}
TIMEOUT_MS=${3:-2000}
MODE=${4:-both}
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

run() { # $1 = hanging nodes, $2 = http|axon
  rm -f "$WORK/nodes.json"
  local flag=""
  [ "$2" = axon ] && flag=axon
  "$BIN" nodes "$WORK" "$NODES" "$1" $flag &
  NODES_PID=$!
  for _ in $(seq 1 300); do [ -s "$WORK/nodes.json" ] && break; sleep 0.1; done
  [ -s "$WORK/nodes.json" ] || { echo "nodes did not start" >&2; exit 1; }
  echo "== $NODES nodes via $2, $1 hanging, $(nproc) cores"
  "$BIN" validator "$WORK" "$ROUNDS" "$TIMEOUT_MS" | tee "$WORK/out-$2-$1.txt"
  kill "$NODES_PID"; wait "$NODES_PID" 2>/dev/null || true; NODES_PID=""
}
# Median of a key=value field over the rounds after the first (warm-up).
median() { # $1 = file, $2 = field
  grep '^round=' "$1" | tail -n +2 | sed -n "s/.*$2=\([0-9.]*\).*/\1/p" | sort -g |
    awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}
modes=(http axon)
[ "$MODE" = both ] || modes=("$MODE")
for m in "${modes[@]}"; do
  run 0 "$m"
  run 1 "$m"
done
if [ "$MODE" = both ]; then
  for f in wall_ms cpu_per_check_ms; do
    h=$(median "$WORK/out-http-0.txt" "$f"); a=$(median "$WORK/out-axon-0.txt" "$f")
    awk -v f="$f" -v h="$h" -v a="$a" 'BEGIN {printf "%s (median, honest): direct %s, via axons %s, axon/direct = %.2fx\n", f, h, a, a / h}'
  done
fi
