#!/usr/bin/env python3
"""llama.cpp side of bench/llm.sh: prefill and greedy decode tokens/s on one GGUF.

Usage (the LLM venv's Python, made by scripts/setup-venv):

  .venv-llm/bin/python bench/llm_llama_cpp.py MODEL.gguf --prompt IDS_FILE \
      [--decode 64] [--runs 3] [--threads N]

Speaks to llama.cpp through llama-cpp-python's low-level bindings (the C API one-to-one),
so no Python wrapper work sits in the timed loop beyond one ctypes call per token, and
the context keeps llama.cpp's own defaults (`llama_context_default_params`: F16 KV cache,
flash attention "auto"; the `Llama` class would force it off) except n_ctx, n_batch 512
(llama-cpp-python's default) and the thread counts. The strongest configuration a user of
llama.cpp gets without tuning.

Per run: clear the KV cache, decode the prompt in batches of 512 (prefill, logits of the
last token only), then DECODE times: argmax of the last logits, decode that one token.
Decode tokens/s counts those single-token forward passes (each with its argmax), the same
as the attesta side. One warm-up run, then --runs timed runs; prints one JSON line with
the per-run numbers, their medians and the greedy tokens of the last run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import llama_cpp
import numpy as np


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet(level, text, user_data):  # noqa: ARG001 - llama.cpp's log callback signature
    """Drops llama.cpp's log lines (stdout carries only the JSON result)."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--prompt", required=True, help="file of comma-separated prompt token ids")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    prompt = [int(t) for t in open(args.prompt).read().split(",") if t.strip()]

    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(args.model.encode(), mparams)
    if not model:
        print(f"llama.cpp could not load {args.model}", file=sys.stderr)
        return 1
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = len(prompt) + args.decode + 1
    cparams.n_batch = 512
    cparams.n_ubatch = 512
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    mem = llama_cpp.llama_get_memory(ctx)

    def decode(tokens: list[int]) -> None:
        for i in range(0, len(tokens), cparams.n_batch):
            chunk = tokens[i : i + cparams.n_batch]
            arr = (llama_cpp.llama_token * len(chunk))(*chunk)
            rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

    def last_argmax() -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        return int(np.argmax(logits))

    def one_run() -> tuple[float, float, list[int]]:
        llama_cpp.llama_memory_clear(mem, True)
        t0 = time.perf_counter()
        decode(prompt)
        t1 = time.perf_counter()
        out = []
        for _ in range(args.decode):
            tok = last_argmax()
            out.append(tok)
            decode([tok])
        t2 = time.perf_counter()
        return len(prompt) / (t1 - t0), args.decode / (t2 - t1), out

    one_run()  # warm-up: page in the weights, size the buffers
    runs = [one_run() for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "engine": "llama.cpp",
                "version": llama_cpp.__version__,
                "threads": args.threads,
                "flash_attn": "auto" if cparams.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO else cparams.flash_attn_type,
                "prompt_tokens": len(prompt),
                "decode_tokens": args.decode,
                "prefill_tps": [r[0] for r in runs],
                "decode_tps": [r[1] for r in runs],
                "prefill_median": statistics.median(r[0] for r in runs),
                "decode_median": statistics.median(r[1] for r in runs),
                "tokens": runs[-1][2],
            }
        )
    )
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
