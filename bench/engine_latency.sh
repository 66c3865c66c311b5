#!/usr/bin/env bash
# Raw engine latency: our tract and onnxruntime (ort) backends vs Python
# onnxruntime on the same models, input shapes and thread counts: the MLP, the
# small CNN, the MiniLM-sized encoder at sequence 16 and 128, the real OCR
# direction classifier from the fixtures, and real models registry packages
# ship (scripts/registry_models.py): PP-OCRv4's text detector and recogniser
# and Silero VAD (a recurrent model that branches with `If`). Rounds alternate the engines so
# background load hits both alike; each cell is the median of the per-round
# p50s (and the best round's min). Not a test: it reports, it does not assert.
#
#   bench/engine_latency.sh                  # all models; T=1 and T=2
#   NAMES="mlp minilm128" bench/engine_latency.sh
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

# BENCH_NO_BUILD=1 uses the example binary already built.
[ -n "${BENCH_NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -p attesta-engine --example latency >&2)
BIN=$TARGET/release/examples/latency

FIXTURES=${ATTESTA_FIXTURES:-$ROOT/../shared/fixtures}
OCR=$FIXTURES/onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx
REGISTRY=$ROOT/target/registry-models
for name in ocr-det ocr-rec silero-vad; do
  [ -f "$REGISTRY/$name.onnx" ] || "$PY" "$ROOT/scripts/registry_models.py" fetch --out "$REGISTRY" "$name" >/dev/null
done
if [ -z "${ATTESTA_ORT_LIB:-}" ]; then
  ATTESTA_ORT_LIB=$("$PY" -c 'import onnxruntime,os,glob;d=os.path.join(os.path.dirname(onnxruntime.__file__),"capi");print(sorted(glob.glob(os.path.join(d,"libonnxruntime.so.*")))[-1])')
fi
export ATTESTA_ORT_LIB

# name → model file and shape flags (same for every engine)
declare -A FILE=(
  [mlp]=$MODELS/mlp.onnx [cnn]=$MODELS/cnn.onnx
  [minilm16]=$MODELS/minilm.onnx [minilm128]=$MODELS/minilm.onnx [ocr_cls]=$OCR
  [ocr_det]=$REGISTRY/ocr-det.onnx [ocr_rec]=$REGISTRY/ocr-rec.onnx [silero_vad]=$REGISTRY/silero-vad.onnx
)
declare -A DIMS=(
  [mlp]="--dim batch=1"
  [cnn]="--dim batch=1"
  [minilm16]="--dim batch=1 --dim seq=16"
  [minilm128]="--dim batch=1 --dim seq=128"
  [ocr_cls]="--shape 1,3,48,192"
  [ocr_det]="--shape 1,3,320,320"
  [ocr_rec]="--shape 1,3,48,320"
  [silero_vad]="--input input=1,512 --input state=2,1,128 --fill sr=16000"
)
NAMES=${NAMES:-"mlp cnn minilm16 minilm128 ocr_cls ocr_det ocr_rec silero_vad"}

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for model in $NAMES; do
  [ -f "${FILE[$model]}" ] || { echo "skipping $model: ${FILE[$model]} missing" >&2; continue; }
  for t in $THREADS; do
    for _ in $(seq "$ROUNDS"); do
      # Interleaved: tract, our onnxruntime backend, Python onnxruntime.
      for engine in tract ort; do
        # shellcheck disable=SC2086
        "$BIN" "${FILE[$model]}" --engine "$engine" --iters "$ITERS" --threads "$t" ${DIMS[$model]} \
          | sed "s/^{/{\"name\":\"$model\",/" >>"$RESULTS"
      done
      # shellcheck disable=SC2086
      "$PY" "$ROOT/bench/engine_latency.py" "${FILE[$model]}" --iters "$ITERS" --threads "$t" ${DIMS[$model]} \
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
print("p50 ms (median of rounds); ratio = ours / Python onnxruntime")
print(f"{'model':10} {'T':>2} {'tract':>9} {'ort':>9} {'python':>9} {'tract/py':>9} {'ort/py':>7}")
order = ["mlp", "cnn", "minilm16", "minilm128", "ocr_cls", "ocr_det", "ocr_rec", "silero_vad"]
for (name, t) in sorted({(k[0], k[1]) for k in cells}, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1])):
    p = {e: statistics.median(r["p50_ms"] for r in cells.get((name, t, e), [])) if cells.get((name, t, e)) else float("nan")
         for e in ("tract", "ort", "onnxruntime")}
    py = p["onnxruntime"]
    print(f"{name:10} {t:>2} {p['tract']:>9.3f} {p['ort']:>9.3f} {py:>9.3f} {p['tract'] / py:>9.2f} {p['ort'] / py:>7.2f}")
PYEOF
