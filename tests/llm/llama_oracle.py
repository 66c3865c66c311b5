"""llama.cpp (llama-cpp-python, the LLM venv) as the reference of the Rust LLM tests.

Reads one JSON request on stdin and writes one JSON answer on stdout (llama.cpp's own log
goes to stderr). Every request has "op" and "model" (a GGUF path). Ops:

  tokenize    {"texts": [str], "texts_hex": [hex]?, "add_special": true, "parse_special": false}
              -> {"tokens": [[int]]}  (texts first, then texts_hex, in order)
  detokenize  {"tokens": [int], "remove_special": false, "unparse_special": false}
              -> {"text": str (lossy UTF-8), "hex": hex of the bytes,
                  "pieces_hex": [hex of llama_token_to_piece(t, special=unparse_special)]}
  vocab       {} -> {"n_vocab", "bos", "eos", "eot" (-1 if none), "add_bos", "add_eos",
                     "eog": [every id llama_vocab_is_eog accepts], "control": [ids]}
  logits      {"tokens": [int], "out": path, ...run options}
              -> {"shape": [n_tokens, n_vocab], "out": path}; `out` receives the
                 teacher-forced logits of every position, row-major little-endian f32
  greedy      {"prompt_tokens": [int], "n": int, "stop_at_eog": false, ...run options}
              -> {"tokens": [int], "margins": [float], "top2": [[id, id]]}: argmax
                 continuation; margins[i] = top-1 minus top-2 logit at step i

Run options (logits, greedy): "n_threads" (1), "n_ctx" (the model's context length),
"n_batch" (512), "kv_type" ("f32" or "f16"; "f32"), "flash_attn" (false). Answers of
those ops echo them as "config". Defaults favour a faithful reference over speed.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

import numpy as np

import llama_cpp

KV_TYPES = {"f32": 0, "f16": 1}  # ggml_type ids


def vocab_model(path: str) -> llama_cpp.Llama:
    """The model's tokenizer only (no weights loaded)."""
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def run_config(req: dict[str, Any]) -> dict[str, Any]:
    """The run options of a logits/greedy request, with defaults filled in."""
    kv = req.get("kv_type", "f32")
    if kv not in KV_TYPES:
        raise ValueError(f"kv_type must be one of {sorted(KV_TYPES)}")
    return {
        "n_threads": int(req.get("n_threads", 1)),
        "n_ctx": int(req.get("n_ctx", 0)),  # 0: the model's own
        "n_batch": int(req.get("n_batch", 512)),
        "kv_type": kv,
        "flash_attn": bool(req.get("flash_attn", False)),
    }


def full_model(path: str, cfg: dict[str, Any], logits_all: bool) -> llama_cpp.Llama:
    """The model with weights, a context per `cfg`, seed fixed."""
    return llama_cpp.Llama(
        model_path=path,
        n_ctx=cfg["n_ctx"],
        n_batch=cfg["n_batch"],
        n_ubatch=cfg["n_batch"],
        n_threads=cfg["n_threads"],
        n_threads_batch=cfg["n_threads"],
        logits_all=logits_all,
        flash_attn=cfg["flash_attn"],
        type_k=KV_TYPES[cfg["kv_type"]],
        type_v=KV_TYPES[cfg["kv_type"]],
        seed=0,
        verbose=False,
    )


def op_tokenize(req: dict[str, Any]) -> dict[str, Any]:
    llm = vocab_model(req["model"])
    texts = [t.encode("utf-8") for t in req.get("texts", [])]
    texts += [bytes.fromhex(h) for h in req.get("texts_hex", [])]
    add, parse = bool(req.get("add_special", True)), bool(req.get("parse_special", False))
    return {"tokens": [llm.tokenize(t, add_bos=add, special=parse) for t in texts]}


def token_piece(vocab, token: int, special: bool) -> bytes:
    """llama_token_to_piece with no lstrip, growing the buffer when it is too small."""
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def detokenize(vocab, tokens: list[int], remove: bool, unparse: bool) -> bytes:
    """llama.cpp's llama_detokenize (not llama-cpp-python's own joining of pieces)."""
    arr = (llama_cpp.llama_token * max(len(tokens), 1))(*tokens)
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(tokens), buf, size, remove, unparse)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def op_detokenize(req: dict[str, Any]) -> dict[str, Any]:
    llm = vocab_model(req["model"])
    vocab = llm._model.vocab
    tokens = [int(t) for t in req["tokens"]]
    remove, unparse = bool(req.get("remove_special", False)), bool(req.get("unparse_special", False))
    raw = detokenize(vocab, tokens, remove, unparse)
    return {
        "text": raw.decode("utf-8", errors="replace"),
        "hex": raw.hex(),
        "pieces_hex": [token_piece(vocab, t, unparse).hex() for t in tokens],
    }


def op_vocab(req: dict[str, Any]) -> dict[str, Any]:
    llm = vocab_model(req["model"])
    v = llm._model.vocab
    n = llama_cpp.llama_vocab_n_tokens(v)
    return {
        "n_vocab": n,
        "bos": llama_cpp.llama_vocab_bos(v),
        "eos": llama_cpp.llama_vocab_eos(v),
        "eot": llama_cpp.llama_vocab_eot(v),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(v)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(v)),
        "eog": [t for t in range(n) if llama_cpp.llama_vocab_is_eog(v, t)],
        "control": [t for t in range(n) if llama_cpp.llama_vocab_is_control(v, t)],
    }


def op_logits(req: dict[str, Any]) -> dict[str, Any]:
    cfg = run_config(req)
    tokens = [int(t) for t in req["tokens"]]
    llm = full_model(req["model"], cfg, logits_all=True)
    llm.eval(tokens)
    scores = np.ascontiguousarray(llm.scores[: len(tokens), :], dtype="<f4")
    scores.tofile(req["out"])
    return {"shape": list(scores.shape), "out": req["out"], "config": cfg}


def last_logits(llm: llama_cpp.Llama) -> np.ndarray:
    """The logits of the last token decoded (a copy)."""
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def op_greedy(req: dict[str, Any]) -> dict[str, Any]:
    cfg = run_config(req)
    llm = full_model(req["model"], cfg, logits_all=False)
    vocab = llm._model.vocab
    stop = bool(req.get("stop_at_eog", False))
    llm.eval([int(t) for t in req["prompt_tokens"]])
    out: dict[str, Any] = {"tokens": [], "margins": [], "top2": [], "config": cfg}
    for _ in range(int(req["n"])):
        logits = last_logits(llm)
        top2 = np.argsort(-logits, kind="stable")[:2]
        tok = int(top2[0])
        out["tokens"].append(tok)
        out["margins"].append(float(logits[top2[0]] - logits[top2[1]]))
        out["top2"].append([int(top2[0]), int(top2[1])])
        if stop and llama_cpp.llama_vocab_is_eog(vocab, tok):
            break
        llm.eval([tok])
    return out


OPS = {
    "tokenize": op_tokenize,
    "detokenize": op_detokenize,
    "vocab": op_vocab,
    "logits": op_logits,
    "greedy": op_greedy,
}


def main() -> int:
    if len(sys.argv) > 1:
        print(__doc__, file=sys.stderr)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    req = json.load(sys.stdin)
    op = OPS.get(req.get("op"))
    if op is None:
        print(f"unknown op {req.get('op')!r}; ops: {sorted(OPS)}", file=sys.stderr)
        return 2
    json.dump(op(req), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
