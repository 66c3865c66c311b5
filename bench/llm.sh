#!/usr/bin/env bash
# LLM engine throughput: attesta's engine (crates/llm on candle) against llama.cpp
# (llama-cpp-python from the LLM venv) on the same GGUF with the same thread count:
# prefill tokens/s (a fixed 256-token prompt, one forward pass per 256/512-token batch,
# logits of the last token) and greedy decode tokens/s (64 single-token forward passes
# after that prompt, each with its argmax), and the validator's cost: a teacher-forced check
# of a challenge-sized request (the first CHECK_PROMPT prompt ids + DECODE greedy tokens)
# against generating it. Then the node end to end: `attesta node`
# streams a greedy 64-token completion of the same prompt from /v1/completions (plain
# SSE) and through the sealed channel (crates/client/examples/llm_stream_sealed.rs);
# TTFT and tokens/s as the client sees them, next to the engine's decode rate, and
# sealed ÷ plain.
# Not a test: it reports, it does not assert (it does say whether the greedy tokens of
# the engines agree).
#
#   bench/llm.sh                          # small-spm in q4_k and q8_0, all cores, 3 runs
#   THREADS=1 RUNS=5 bench/llm.sh
#   QUANTS=q8_0 NODE=0 bench/llm.sh       # one model, engines only
#
# Environment: THREADS (default: all cores), RUNS (timed runs per engine per round after
# one warm-up; 3), ROUNDS (1; rounds alternate the engines so background load hits both
# alike, cells are medians over every run of every round), QUANTS ("q4_k q8_0"; the
# model is small-spm-QUANT from scripts/make-test-gguf, ~0.43 B parameters), DECODE (64), CHECK_PROMPT (32: the validator's default challenge prompt),
# NODE (1: also the node end to end; 0: skip), ATTESTA_BIN (default
# target/release/attesta, built with `cargo build --release -p attesta-cli` when missing),
# ATTESTA_LLM_PYTHON (default .venv-llm/bin/python), BENCH_NO_BUILD=1 (use the example
# binary already built), BENCH_OUT (keep the work dir: prompt, raw JSON lines, node log).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${ATTESTA_LLM_PYTHON:-$ROOT/.venv-llm/bin/python}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
THREADS=${THREADS:-$(nproc)}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-1}
QUANTS=${QUANTS:-"q4_k q8_0"}
DECODE=${DECODE:-64}
CHECK_PROMPT=${CHECK_PROMPT:-32}
NODE=${NODE:-1}
PROMPT_TOKENS=256
ATTESTA=${ATTESTA_BIN:-$TARGET/release/attesta}

if [ ! -x "$PY" ]; then
  echo "no Python at $PY: run scripts/setup-venv (or set ATTESTA_LLM_PYTHON)" >&2
  exit 1
fi

if [ -n "${BENCH_OUT:-}" ]; then
  WORK=$BENCH_OUT
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/attesta-llm-bench.XXXXXX")
fi
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -z "${BENCH_OUT:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The models live where the tests keep theirs (crates/test-support's gguf_cache_dir):
# target/test-gguf/<first 16 hex of sha256 over (length ‖ bytes) of the generator
# script and the LLM pins>, so the tests' and the benchmark's files are shared.
GGUF_DIR=$ROOT/target/test-gguf/$("$PY" - "$ROOT" <<'PYEOF'
import hashlib, struct, sys
from pathlib import Path
h = hashlib.sha256()
for rel in ("scripts/make_test_gguf.py", "scripts/requirements-llm.txt"):
    b = (Path(sys.argv[1]) / rel).read_bytes()
    h.update(struct.pack("<Q", len(b)))
    h.update(b)
print(h.hexdigest()[:16])
PYEOF
)
mkdir -p "$GGUF_DIR"
for q in $QUANTS; do
  if [ ! -f "$GGUF_DIR/small-spm-$q.gguf" ]; then
    echo "== writing small-spm-$q.gguf (once; a few minutes)" >&2
    ATTESTA_LLM_PYTHON=$PY "$ROOT/scripts/make-test-gguf" model "small-spm-$q" --out "$GGUF_DIR" \
      --sdist-cache "$ROOT/target/test-gguf/sdist" >/dev/null
  fi
done

[ -n "${BENCH_NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -p attesta-llm --example llm_bench >&2)
BIN=$TARGET/release/examples/llm_bench

# The prompt: BOS then 255 ids spread over the vocabulary (no control tokens), the same
# ids for every engine; teacher-forced, so no tokenizer is involved.
PROMPT=$WORK/prompt.txt
"$PY" -c "print(','.join(['1'] + [str(3 + (i * 7919) % 31997) for i in range(1, $PROMPT_TOKENS)]))" >"$PROMPT"

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
echo "== engines: small-spm {${QUANTS// /,}}, $THREADS thread(s), $ROUNDS round(s) × $RUNS run(s), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for _ in $(seq "$ROUNDS"); do
  for q in $QUANTS; do
    model=$GGUF_DIR/small-spm-$q.gguf
    RAYON_NUM_THREADS=$THREADS "$BIN" "$model" --prompt "$PROMPT" --decode "$DECODE" --runs "$RUNS" \
      --check-prompt "$CHECK_PROMPT" |
      sed "s/^{/{\"quant\":\"$q\",/" >>"$RESULTS"
    "$PY" "$ROOT/bench/llm_llama_cpp.py" "$model" --prompt "$PROMPT" --decode "$DECODE" --runs "$RUNS" \
      --threads "$THREADS" | sed "s/^{/{\"quant\": \"$q\",/" >>"$RESULTS"
  done
done

if [ "$NODE" = 1 ]; then
  if [ ! -x "$ATTESTA" ]; then
    echo "== building attesta (cargo build --release -p attesta-cli)" >&2
    (cd "$ROOT" && cargo build --release -p attesta-cli >&2)
  fi
  [ -n "${BENCH_NO_BUILD:-}" ] ||
    (cd "$ROOT" && cargo build --release -p attesta-client --example llm_stream_sealed >&2)
  SEALED_BIN=$TARGET/release/examples/llm_stream_sealed
  declare -A CID
  for q in $QUANTS; do
    CID[$q]=$("$ATTESTA" models add "$GGUF_DIR/small-spm-$q.gguf" --store "$WORK/store" | tail -n 1 | tr -d '[:space:]')
    [ -n "${CID[$q]}" ] || { echo "attesta models add printed no CID for $q" >&2; exit 1; }
  done
  PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Same thread count for candle's kernels as the engine runs; the dev TEE (insecure
  # root) is how a node runs off TEE hardware, its state in the work dir.
  RAYON_NUM_THREADS=$THREADS "$ATTESTA" node --listen "127.0.0.1:$PORT" --store "$WORK/store" \
    --data-dir "$WORK/node-data" --tee dev >"$WORK/node.log" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 120); do
    kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "node exited; log:" >&2; tail -n 30 "$WORK/node.log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    [ "$i" = 120 ] && { echo "node not ready after 60 s" >&2; exit 1; }
    sleep 0.5
  done
  echo "== node end to end on 127.0.0.1:$PORT (pid ${PIDS[-1]}), plain SSE, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for q in $QUANTS; do
    "$PY" "$ROOT/bench/llm_stream.py" "http://127.0.0.1:$PORT/v1/completions" "${CID[$q]}" \
      --prompt "$PROMPT" --max-tokens "$DECODE" --runs "$RUNS" |
      sed "s/^{/{\"quant\": \"$q\", \"mode\": \"plain\",/" >>"$RESULTS"
    # The same completion through the attested sealed channel (each chunk opened as it
    # arrives, the receipt verified at the end), as `attesta chat` streams.
    "$SEALED_BIN" "http://127.0.0.1:$PORT" "${CID[$q]}" "$PROMPT" "$WORK/node-data/dev-root.pem" \
      "$DECODE" "$RUNS" | sed "s/^{/{\"quant\": \"$q\", \"mode\": \"sealed\",/" >>"$RESULTS"
  done
fi

"$PY" - "$RESULTS" "$THREADS" <<'PYEOF'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads = sys.argv[2]
def runs(quant, engine, key, mode=None):
    out = []
    for r in rows:
        if r["quant"] == quant and r["engine"] == engine and r.get("mode") == mode:
            out += r[key] if isinstance(r[key], list) else [r[key]]
    return out
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def agree(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
quants = list(dict.fromkeys(r["quant"] for r in rows))
print(f"load average: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}), threads: {threads}")
print("tokens/s, median of runs; ratio = attesta / llama.cpp (same GGUF, same threads)")
print(f"{'model':16} {'engine':10} {'prefill':>9} {'decode':>8}   {'prefill ×':>9} {'decode ×':>8}  greedy agree")
for q in quants:
    a_p, a_d = med(runs(q, "attesta", "prefill_tps")), med(runs(q, "attesta", "decode_tps"))
    l_p, l_d = med(runs(q, "llama.cpp", "prefill_tps")), med(runs(q, "llama.cpp", "decode_tps"))
    a_tok = next((r["tokens"] for r in rows if r["quant"] == q and r["engine"] == "attesta"), [])
    l_tok = next((r["tokens"] for r in rows if r["quant"] == q and r["engine"] == "llama.cpp"), [])
    print(f"{'small-spm-' + q:16} {'attesta':10} {a_p:9.1f} {a_d:8.2f}   {a_p / l_p:9.2f} {a_d / l_d:8.2f}  "
          f"{agree(a_tok, l_tok)}/{min(len(a_tok), len(l_tok))} leading tokens")
    print(f"{'':16} {'llama.cpp':10} {l_p:9.1f} {l_d:8.2f}")
checks = [r for r in rows if r["engine"] == "attesta" and "check_s" in r]
if checks:
    print()
    print("validator check (one teacher-forced pass) ÷ node generation (prefill + greedy steps) of the")
    print("same challenge-sized request; the issue's goal is < 0.25")
    for q in quants:
        rs = [r for r in checks if r["quant"] == q]
        if rs:
            c, g = med(runs(q, "attesta", "check_s")), med(runs(q, "attesta", "generate_s"))
            print(f"{'small-spm-' + q:16} {rs[0]['check_prompt_tokens']} prompt + {rs[0]['decode_tokens']} tokens: "
                  f"check {c * 1000:.0f} ms, generate {g * 1000:.0f} ms, ratio {c / g:.3f}")
nodes = [r for r in rows if r["engine"] == "node"]
if nodes:
    print()
    print("node end to end (/v1/completions, SSE, client on 127.0.0.1); ratio = node decode / engine decode")
    print(f"{'model':16} {'mode':7} {'TTFT ms':>8} {'decode':>8} {'total':>8}   {'÷ engine':>8}  tokens")
    for q in quants:
        a_d = med(runs(q, "attesta", "decode_tps"))
        tot_by_mode = {}
        for mode in ("plain", "sealed"):
            rs = [r for r in nodes if r["quant"] == q and r.get("mode") == mode]
            if not rs:
                continue
            per = [x for r in rs for x in r["runs"]]
            ttft, dec, tot = (med([x[k] for x in per]) for k in ("ttft_ms", "decode_tps", "total_tps"))
            a_tok = next((r["tokens"] for r in rows if r["quant"] == q and r["engine"] == "attesta"), [])
            print(f"{'small-spm-' + q:16} {mode:7} {ttft:8.1f} {dec:8.2f} {tot:8.2f}   {dec / a_d:8.2f}  "
                  f"{per[-1]['tokens']} ({per[-1]['finish_reason']}), {agree(rs[-1]['tokens'], a_tok)} as the engine")
            tot_by_mode[mode] = tot
        if {"plain", "sealed"} <= tot_by_mode.keys():
            print(f"{'':16} sealed ÷ plain total tokens/s: {tot_by_mode['sealed'] / tot_by_mode['plain']:.3f}")
PYEOF
