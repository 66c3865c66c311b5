#!/usr/bin/env python3
"""Node end-to-end side of bench/llm.sh: streams greedy completions from `/v1/completions`.

Usage (any Python 3; standard library only):

  python3 bench/llm_stream.py URL CID --prompt IDS_FILE [--max-tokens 64] [--runs 3]

Each request sends the prompt as token ids (the same 256 tokens the engine runs use),
`temperature` 0, `max_tokens`, `stream` with `include_usage` and `return_token_ids`, and
reads the server-sent events as they arrive (plain HTTP/1.1 on one connection per
request). Per request: TTFT (send to the first chunk carrying a token), decode tokens/s
((tokens - 1) / (last token chunk - first token chunk): the rate the client sees tokens
after the first) and total tokens/s (tokens / send to `[DONE]`). The token count is
`usage.completion_tokens`; a completion that stops early (end-of-generation token) is
reported as such. One warm-up request (it also loads the model), then --runs timed ones;
prints one JSON line with the per-request numbers and medians.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


def one_request(url: str, body: bytes) -> dict:
    """One streamed completion, timed from just before the request is sent."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", u.path, body=body, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status}: {resp.read()[:500]!r}")
    first = last = done = None
    usage = None
    token_ids: list[int] = []
    finish = None
    while True:
        line = resp.fp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        now = time.perf_counter()
        if data == b"[DONE]":
            done = now
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise SystemExit(f"stream error: {chunk['error']}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices", []):
            ids = choice.get("token_ids") or []
            if ids or choice.get("text"):
                first = first if first is not None else now
                last = now
            token_ids.extend(ids)
            finish = choice.get("finish_reason") or finish
    conn.close()
    if done is None or first is None or usage is None:
        raise SystemExit("stream ended without tokens, usage or [DONE]")
    n = usage["completion_tokens"]
    return {
        "ttft_ms": (first - t0) * 1000,
        "decode_tps": (n - 1) / (last - first) if n > 1 and last > first else float("nan"),
        "total_tps": n / (done - t0),
        "tokens": n,
        "finish_reason": finish,
        "token_ids": token_ids,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the node's /v1/completions URL")
    ap.add_argument("cid", help="the model's CID")
    ap.add_argument("--prompt", required=True, help="file of comma-separated prompt token ids")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    prompt = [int(t) for t in open(args.prompt).read().split(",") if t.strip()]
    body = json.dumps(
        {
            "model": args.cid,
            "prompt": prompt,
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "return_token_ids": True,
        }
    ).encode()
    one_request(args.url, body)  # warm-up: loads the model
    runs = [one_request(args.url, body) for _ in range(args.runs)]
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731 - three uses, one line
    print(
        json.dumps(
            {
                "engine": "node",
                "runs": [{k: v for k, v in r.items() if k != "token_ids"} for r in runs],
                "ttft_ms_median": med("ttft_ms"),
                "decode_median": med("decode_tps"),
                "total_median": med("total_tps"),
                "tokens": runs[-1]["token_ids"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
