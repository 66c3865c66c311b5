#!/usr/bin/env bash
# DCAP verification benchmark (not a test): attesta's strict verifier
# against the dcap-qvl Python package, same fixture quotes, collateral
# parsed once, same injected time, same run, pinned to one core.
# usage: bench/dcap_verify.sh [seconds-per-quote]  (BENCH_ROUNDS=3 alternating rounds, medians)
# Needs dcap-qvl: scripts/setup-venv installs it (wheel) into the venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs="${1:-2}"
fixtures="${ATTESTA_FIXTURES:-$root/../shared/fixtures}"
python="${ATTESTA_PYTHON:-$root/.venv/bin/python}"
if ! "$python" -c "import dcap_qvl" 2>/dev/null; then
  echo "dcap_qvl not importable by $python: run scripts/setup-venv (or set ATTESTA_PYTHON)" >&2
  exit 1
fi
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi

cargo build --release -q -p attesta-evidence --example dcap_bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/dcap_bench"
rounds="${BENCH_ROUNDS:-3}"
rust_out=""
py_out=""
for _ in $(seq "$rounds"); do
  rust_out+=$(ATTESTA_FIXTURES="$fixtures" "${pin[@]}" "$bin" "$secs")$'\n'
  py_out+=$("${pin[@]}" "$python" bench/dcap_verify.py "$fixtures" "$secs")$'\n'
done
echo "$rust_out"
echo "$py_out"
python3 - "$rust_out" "$py_out" <<'PY'
import statistics, sys
def parse(text):
    rows = {}
    for line in text.splitlines():
        if line.strip():
            kv = dict(p.split("=", 1) for p in line.split())
            rows.setdefault(kv["quote"], []).append(float(kv["per_s"]))
    return {q: statistics.median(v) for q, v in rows.items()}
r, p = parse(sys.argv[1]), parse(sys.argv[2])
print(f"{'quote':28} {'dcap-qvl/s':>10} {'attesta/s':>10} {'ratio':>7}")
for q in r:
    print(f"{q:28} {p[q]:10.0f} {r[q]:10.0f} {r[q]/p[q]:6.2f}x")
ok = r["total"] / p["total"] >= 1.5
print(f"goal (>= 1.5x dcap-qvl): {'met' if ok else 'NOT met'}")
PY
