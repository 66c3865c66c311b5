#!/usr/bin/env bash
# Nitro verification benchmark (not a test): Rust cold / warm / one-verify
# floor against the Python baseline (cbor2 + cryptography), same machine,
# same run, pinned to one core. usage: bench/nitro_verify.sh [seconds-per-mode]
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

cargo build --release -q -p attesta-evidence --example nitro_bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/nitro_bench"
# Rust and Python alternate for BENCH_ROUNDS rounds; medians per figure, so
# load changes on a shared machine hit both sides alike.
rounds="${BENCH_ROUNDS:-3}"
rust_out=""
py_out=""
for _ in $(seq "$rounds"); do
  rust_out+=$(ATTESTA_FIXTURES="$fixtures" "${pin[@]}" "$bin" "$secs")$'\n'
  py_out+=$("${pin[@]}" "$python" bench/nitro_verify.py "$fixtures" "$secs")$'\n'
done
echo "$rust_out"
echo "$py_out"
python3 - "$rust_out" "$py_out" <<'PY'
import statistics, sys
def parse(text):
    rows = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        kv = dict(p.split("=", 1) for p in line.split())
        row = rows.setdefault(kv.pop("doc"), {})
        for k, v in kv.items():
            row.setdefault(k, []).append(float(v))
    return {d: {k: statistics.median(v) for k, v in row.items()} for d, row in rows.items()}
r, p = parse(sys.argv[1]), parse(sys.argv[2])
print(f"medians of {len(sys.argv[1].split('doc=total'))-1} rounds")
print(f"{'document':34} {'python/s':>9} {'cold/s':>8} {'warm/s':>8} {'floor/s':>8} {'cold/py':>8} {'warm/py':>8} {'warm/floor':>10}")
for doc, row in r.items():
    py = p[doc]["python_per_s"]
    print(f"{doc:34} {py:9.0f} {row['cold_per_s']:8.0f} {row['warm_per_s']:8.0f} {row['floor_per_s']:8.0f} "
          f"{row['cold_per_s']/py:7.2f}x {row['warm_per_s']/py:7.2f}x {100*row['warm_per_s']/row['floor_per_s']:9.1f}%")
t, py = r["total"], p["total"]["python_per_s"]
ok = t["warm_per_s"] / py >= 12 and t["warm_per_s"] / t["floor_per_s"] >= 0.9 and t["cold_per_s"] / py >= 2.5
print(f"goals (warm >= 12x python, >= 90% of floor; cold >= 2.5x): {'met' if ok else 'NOT met'}")
PY
