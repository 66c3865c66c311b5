#!/usr/bin/env bash
# Throughput benchmark: attesta's node against an OpenGradient-style Python
# baseline (bench/og_baseline/server.py), same models, same request bodies,
# same load generator (wrk). See bench/README.md.
#
#   bench/run.sh                  # full comparison
#   bench/run.sh --baseline-only  # only the Python baseline (no attesta binary)
#
# Environment: BENCH_MODELS ("mlp cnn minilm"), BENCH_DURATION (10s),
# BENCH_CONNECTIONS (8), BENCH_THREADS (1, wrk threads), BENCH_ROUNDS (1; the
# table shows the median round per model and server), BENCH_OUT (directory
# to keep models, bodies, logs and wrk outputs; default a temp dir that is
# removed), ATTESTA_BIN (default target/release/attesta), ATTESTA_NODE_ARGS
# (extra arguments for `attesta node`, default `--tee dev`), ATTESTA_PYTHON (default .venv/bin/python),
# BENCH_CACHED_BASELINE (1: also run the baseline with one cached session and
# file hash per model, "ort-cached", which is not what OpenGradient does; 0: skip it),
# BENCH_STRONG_BASELINE (1: also run bench/strong_baseline/server.py, "py-strong": Starlette,
# cached session, numpy-vectorised decode, inference off the event loop; 0: skip it),
# BENCH_FLOOR (1: also load crates/node/examples/http_floor, "http-floor": the node's HTTP
# stack answering a fixed body without decoding or running anything, the exchange's own
# cost; 0: skip it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench="$root/bench"
baseline_only=0
for arg in "$@"; do
  case "$arg" in
    --baseline-only) baseline_only=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

models=${BENCH_MODELS:-"mlp cnn minilm"}
duration=${BENCH_DURATION:-10s}
connections=${BENCH_CONNECTIONS:-8}
threads=${BENCH_THREADS:-1}
rounds=${BENCH_ROUNDS:-1}
py=${ATTESTA_PYTHON:-$root/.venv/bin/python}
attesta=${ATTESTA_BIN:-$root/target/release/attesta}

if [ ! -x "$py" ]; then
  echo "no Python at $py: run scripts/setup-venv (or set ATTESTA_PYTHON)" >&2
  exit 1
fi
if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing the Debian package" >&2
  apt-get install -y wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
fi
if [ "$baseline_only" = 0 ] && [ ! -x "$attesta" ]; then
  echo "building attesta (cargo build --release -p attesta-cli)" >&2
  (cd "$root" && env -u CARGO_TARGET_DIR cargo build --release -p attesta-cli)
fi

if [ -n "${BENCH_OUT:-}" ]; then
  work=$BENCH_OUT
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/attesta-bench.XXXXXX")
fi
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -z "${BENCH_OUT:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most 60 s) until PORT accepts connections, failing early if the
# process PID has died.
wait_ready() {
  local pid=$1 port=$2 log=$3 i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server (pid $pid) exited; log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "server on port $port not ready after 60 s" >&2
  return 1
}

echo "== models -> $work/models"
"$py" "$root/scripts/make_models.py" "$work/models" --only $(for m in $models; do echo "$m.onnx"; done) |
  cut -f1,2

declare -A cid
baseline_args=()
mkdir -p "$work/store"
for m in $models; do
  file="$work/models/$m.onnx"
  if [ "$baseline_only" = 1 ]; then
    cid[$m]="sha256-$(sha256sum "$file" | cut -c1-16)"
  else
    cid[$m]=$("$attesta" models add "$file" --store "$work/store" | tail -n 1 | tr -d '[:space:]')
    [ -n "${cid[$m]}" ] || { echo "attesta models add printed no CID for $m" >&2; exit 1; }
  fi
  baseline_args+=(--model "${cid[$m]}=$file")
  echo "   $m -> ${cid[$m]}"
done

echo "== request bodies"
body_args=()
for m in $models; do body_args+=("$m=${cid[$m]}"); done
"$py" "$bench/make_bodies.py" "$work/bodies" "${body_args[@]}"

echo "== servers"
baseline_port=$(free_port)
"$py" "$bench/og_baseline/server.py" --port "$baseline_port" "${baseline_args[@]}" \
  >"$work/baseline.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-1]}" "$baseline_port" "$work/baseline.log"
echo "   baseline pid ${pids[-1]} on 127.0.0.1:$baseline_port"
urls=("http://127.0.0.1:$baseline_port/infer")
servers=(baseline)
if [ "${BENCH_CACHED_BASELINE:-1}" = 1 ]; then
  cached_port=$(free_port)
  "$py" "$bench/og_baseline/server.py" --cache-models --port "$cached_port" "${baseline_args[@]}" \
    >"$work/ort-cached.log" 2>&1 &
  pids+=($!)
  wait_ready "${pids[-1]}" "$cached_port" "$work/ort-cached.log"
  echo "   ort-cached pid ${pids[-1]} on 127.0.0.1:$cached_port"
  urls+=("http://127.0.0.1:$cached_port/infer")
  servers+=(ort-cached)
fi
if [ "${BENCH_STRONG_BASELINE:-1}" = 1 ]; then
  strong_port=$(free_port)
  "$py" "$bench/strong_baseline/server.py" --port "$strong_port" "${baseline_args[@]}" \
    >"$work/py-strong.log" 2>&1 &
  pids+=($!)
  wait_ready "${pids[-1]}" "$strong_port" "$work/py-strong.log"
  echo "   py-strong pid ${pids[-1]} on 127.0.0.1:$strong_port"
  urls+=("http://127.0.0.1:$strong_port/infer")
  servers+=(py-strong)
fi
if [ "$baseline_only" = 0 ] && [ "${BENCH_FLOOR:-1}" = 1 ]; then
  # The node's HTTP stack answering a fixed body without decoding or running anything
  # (crates/node/examples/http_floor.rs): what the exchange itself costs on loopback.
  floor_bin=$(dirname "$attesta")/examples/http_floor
  if [ ! -x "$floor_bin" ]; then
    (cd "$root" && env -u CARGO_TARGET_DIR cargo build --release -q -p attesta-node --example http_floor)
  fi
  floor_port=$(free_port)
  "$floor_bin" "127.0.0.1:$floor_port" >"$work/http-floor.log" 2>&1 &
  pids+=($!)
  wait_ready "${pids[-1]}" "$floor_port" "$work/http-floor.log"
  echo "   http-floor pid ${pids[-1]} on 127.0.0.1:$floor_port"
  urls+=("http://127.0.0.1:$floor_port/infer")
  servers+=(http-floor)
fi
if [ "$baseline_only" = 0 ]; then
  node_port=$(free_port)
  # The dev TEE (attestation on, insecure root) is how a node runs off TEE
  # hardware; its state goes to the work dir, not the user's data dir.
  # shellcheck disable=SC2086 # ATTESTA_NODE_ARGS is a word list on purpose
  "$attesta" node --listen "127.0.0.1:$node_port" --store "$work/store" --data-dir "$work/node-data" \
    ${ATTESTA_NODE_ARGS---tee dev} \
    >"$work/attesta.log" 2>&1 &
  pids+=($!)
  wait_ready "${pids[-1]}" "$node_port" "$work/attesta.log"
  echo "   attesta pid ${pids[-1]} on 127.0.0.1:$node_port"
  urls+=("http://127.0.0.1:$node_port/infer")
  servers+=(attesta)
fi

echo "== same answer check (reference: baseline = onnxruntime)"
for m in $models; do
  echo "   $m"
  labelled=()
  for i in "${!servers[@]}"; do
    # The floor answers a fixed body: nothing to compare.
    [ "${servers[$i]}" = http-floor ] || labelled+=("${servers[$i]}=${urls[$i]}")
  done
  "$py" "$bench/check_same.py" "$work/bodies/$m.json" "$work/models/$m.onnx" "${labelled[@]}"
done

echo "== load average before the load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== load: wrk -t$threads -c$connections -d$duration per model per server, $rounds round(s)"
for r in $(seq 1 "$rounds"); do
  for m in $models; do
    for i in "${!servers[@]}"; do
      s=${servers[$i]}
      out="$work/wrk-$m-$s-r$r.txt"
      BENCH_BODY="$work/bodies/$m.json" wrk -t"$threads" -c"$connections" -d"$duration" \
        --timeout 30s --latency -s "$bench/post_body.lua" "${urls[$i]}" >"$out"
      echo "   round $r $m $s: $(grep -E '^Requests/sec' "$out" || echo 'no result')"
      if grep -q 'Non-2xx' "$out"; then echo "   !! $(grep 'Non-2xx' "$out")"; fi
    done
  done
done
echo
echo "== results ($(nproc) cores shared by wrk and the servers; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ))"
models_arr=()
for m in $models; do models_arr+=("$m"); done
"$py" "$bench/table.py" "$work" "${models_arr[@]}"
if [ -n "${BENCH_OUT:-}" ]; then echo "(raw outputs kept in $work)"; fi
