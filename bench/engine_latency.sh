#!/usr/bin/env bash
# Raw engine latency: our tract backend vs Python onnxruntime on the same
# models, input shapes and thread counts. Rounds alternate the two engines so
# background load hits both alike; each cell is the median of the per-round
# p50s (and the best round's min). Not a test: it reports, it does not assert.
#
#   bench/engine_latency.sh                  # mlp, cnn, minilm; T=1 and T=2
#   ITERS=100 ROUNDS=5 bench/engine_latency.sh
#   BENCH_MODELS=/some/dir bench/engine_latency.sh
#
# Models come from bench/models/ when present, else scripts/make_models.py
# writes them under the cargo target dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${ATTESTA_PYTHON:-$ROOT/.venv/bin/python}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ITERS=${ITERS:-50}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-"1 2"}

if [ ! -x "$PY" ]; then
  echo "Python $PY not found: run scripts/setup-venv" >&2
  exit 1
fi
if [ -n "${BENCH_MODELS:-}" ]; then
  MODELS=$BENCH_MODELS
elif [ -f "$ROOT/bench/models/minilm.onnx" ]; then
  MODELS=$ROOT/bench/models
else
  MODELS=$TARGET/bench-models
fi
if [ ! -f "$MODELS/minilm.onnx" ] || [ ! -f "$MODELS/mlp.onnx" ] || [ ! -f "$MODELS/cnn.onnx" ]; then
  mkdir -p "$MODELS"
  "$PY" "$ROOT/scripts/make_models.py" "$MODELS" --only mlp.onnx cnn.onnx minilm.onnx >&2
fi

(cd "$ROOT" && cargo build --release -p attesta-engine --example latency >&2)
BIN=$TARGET/release/examples/latency

declare -A DIMS=(
  [mlp]="--dim batch=1"
  [cnn]="--dim batch=1"
  [minilm]="--dim batch=1 --dim seq=128"
)

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for model in mlp cnn minilm; do
  for t in $THREADS; do
    for _ in $(seq "$ROUNDS"); do
      # shellcheck disable=SC2086
      "$BIN" "$MODELS/$model.onnx" --iters "$ITERS" --threads "$t" ${DIMS[$model]} \
        | sed "s/^{/{\"name\":\"$model\",/" >>"$RESULTS"
      # shellcheck disable=SC2086
      "$PY" "$ROOT/bench/engine_latency.py" "$MODELS/$model.onnx" --iters "$ITERS" --threads "$t" ${DIMS[$model]} \
        | sed "s/^{/{\"name\": \"$model\",/" >>"$RESULTS"
    done
  done
done

"$PY" - "$RESULTS" <<'PYEOF'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cells = {}
for r in rows:
    cells.setdefault((r["name"], r["threads"], r["engine"]), []).append(r)
print(f"load average: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
print(f"{'model':8} {'T':>2} {'tract p50 ms':>13} {'ort p50 ms':>11} {'ratio':>6} {'tract min':>10} {'ort min':>8} {'ratio':>6}")
for (name, t) in sorted({(k[0], k[1]) for k in cells}, key=lambda k: (["mlp", "cnn", "minilm"].index(k[0]), k[1])):
    ours, theirs = cells.get((name, t, "tract"), []), cells.get((name, t, "onnxruntime"), [])
    if not ours or not theirs:
        continue
    p_o = statistics.median(r["p50_ms"] for r in ours)
    p_t = statistics.median(r["p50_ms"] for r in theirs)
    m_o = min(r["min_ms"] for r in ours)
    m_t = min(r["min_ms"] for r in theirs)
    print(f"{name:8} {t:>2} {p_o:>13.3f} {p_t:>11.3f} {p_o / p_t:>6.2f} {m_o:>10.3f} {m_t:>8.3f} {m_o / m_t:>6.2f}")
PYEOF
