#!/usr/bin/env bash
# SEV-SNP verification benchmark (not a test): the Rust pipeline (cold: no
# cached certificates; warm: the VCEK's chain cached) against a
# Python verifier doing the same checks with `cryptography` (OpenSSL), same
# machine, same run, pinned to one core. usage: bench/snp_verify.sh [seconds]
# (BENCH_ROUNDS=3 alternating rounds, medians)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs="${1:-2}"
fixtures="${ATTESTA_FIXTURES:-$root/../shared/fixtures}"
python="${ATTESTA_PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "python venv missing at $python: run scripts/setup-venv" >&2
  exit 1
fi
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi
cargo build --release -q -p attesta-evidence --example snp_bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/snp_bench"
rounds="${BENCH_ROUNDS:-3}"
rust_out=""
py_out=""
for _ in $(seq "$rounds"); do
  rust_out+=$(ATTESTA_FIXTURES="$fixtures" "${pin[@]}" "$bin" "$secs")$'\n'
  py_out+=$("${pin[@]}" "$python" bench/snp_verify.py "$fixtures" "$secs")$'\n'
done
python3 - "$rust_out" "$py_out" <<'PY'
import statistics, sys
def parse(text, key):
    rows = {}
    for line in text.splitlines():
        if line.strip():
            kv = dict(p.split("=", 1) for p in line.split())
            if key in kv:
                rows.setdefault(kv["doc"], []).append(float(kv[key]))
    return {d: statistics.median(v) for d, v in rows.items()}
r, p = parse(sys.argv[1], "rust_per_s"), parse(sys.argv[2], "python_per_s")
c = parse(sys.argv[1], "cold_per_s")
print(f"{'report':36} {'python/s':>9} {'cold/s':>8} {'warm/s':>8} {'cold/py':>8} {'warm/py':>8}")
for doc in r:
    if doc not in c:
        print(f"{doc:36} {p[doc]:9.0f} {'':8} {r[doc]:8.0f} {'':8} {r[doc] / p[doc]:7.2f}x")
        continue
    print(f"{doc:36} {p[doc]:9.0f} {c[doc]:8.0f} {r[doc]:8.0f} {c[doc] / p[doc]:7.2f}x {r[doc] / p[doc]:7.2f}x")
PY
