#!/usr/bin/env bash
# CAR verification throughput against `openssl dgst -sha256` over the same bytes, same run.
#
# Usage: bench/car_verify.sh [MiB=256] [PROFILE=kubo-default-v0]
# Builds crates/content/examples/car_verify.rs, generates a deterministic file and its CAR,
# then times (page cache warm, best of 3 each):
#   openssl   `openssl dgst -sha256` over the CAR file
#   verify    hash every block, parse, check the DAG, discard the file bytes
#   store     verify + write the file to a ModelStore temp file (with its SHA-256) + fsync + commit
# and prints MB/s (of CAR bytes), ratios to OpenSSL and our peak RSS.
set -euo pipefail

MIB="${1:-256}"
PROFILE="${2:-kubo-default-v0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/car_verify.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release -p attesta-content --example car_verify --manifest-path "$ROOT/Cargo.toml"
BIN="$TARGET/release/examples/car_verify"

BYTES=$((MIB * 1024 * 1024))
CID="$("$BIN" gen "$WORK/data.bin" "$WORK/data.car" "$BYTES" "$PROFILE")"
CAR_BYTES=$(stat -c %s "$WORK/data.car")
echo "file: $MIB MiB ($PROFILE), CAR: $CAR_BYTES bytes, root $CID"
cat "$WORK/data.car" "$WORK/data.bin" > /dev/null   # warm the page cache

best() { sort -n | head -1; }
now() { date +%s.%N; }

openssl_secs=$(for _ in 1 2 3; do
  s=$(now); openssl dgst -sha256 "$WORK/data.car" > /dev/null; e=$(now)
  echo "$e - $s" | bc -l
done | best)

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
run_ours() { # mode args...
  local out secs rss best_secs="" best_rss=0
  for _ in 1 2 3; do
    rm -rf "$WORK/store"
    out=$("$BIN" verify "$WORK/data.car" "$CID" "$@")
    secs=$(echo "$out" | field seconds)
    rss=$(echo "$out" | field peak_rss_kib)
    if [ -z "$best_secs" ] || [ "$(echo "$secs < $best_secs" | bc -l)" = 1 ]; then best_secs=$secs; fi
    if [ "$rss" -gt "$best_rss" ]; then best_rss=$rss; fi
  done
  echo "$best_secs $best_rss"
}

read -r verify_secs verify_rss < <(run_ours)
read -r store_secs store_rss < <(run_ours "$WORK/store")

mbps() { echo "scale=1; $CAR_BYTES / $1 / 1000000" | bc -l; }
ratio() { echo "scale=3; $openssl_secs / $1" | bc -l; }
printf '%-28s %10s %8s %14s\n' "what" "MB/s" "ratio" "peak RSS"
printf '%-28s %10s %8s %14s\n' "openssl dgst -sha256" "$(mbps "$openssl_secs")" "1.000" "-"
printf '%-28s %10s %8s %11s KiB\n' "attesta verify (discard)" "$(mbps "$verify_secs")" "$(ratio "$verify_secs")" "$verify_rss"
printf '%-28s %10s %8s %11s KiB\n' "attesta verify + store" "$(mbps "$store_secs")" "$(ratio "$store_secs")" "$store_rss"
grep -q -w sha_ni /proc/cpuinfo && echo "cpu: sha_ni present" || echo "cpu: no sha_ni"
