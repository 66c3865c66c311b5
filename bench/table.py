#!/usr/bin/env python3
"""Turns the wrk outputs of a benchmark run into a markdown table.

Usage: table.py RESULTS_DIR MODEL ...

Reads RESULTS_DIR/wrk-<model>-<server>-r<round>.txt (server is ``attesta``,
``baseline``, ``ort-cached``, ``py-strong`` or ``http-floor``, the node's HTTP stack
answering a fixed body: the exchange's own cost), takes the BENCH_RESULT line printed by
post_body.lua, keeps the median round by req/s (the upper median when the
count is even) and prints model, server, successful requests per second (with the range
over rounds), p50
and p99 latency, failed requests (non-2xx, timeouts, socket errors) and the
throughput ratios attesta / baseline and attesta / ort-cached.
"""

from __future__ import annotations

import sys
from pathlib import Path

SERVERS = ("attesta", "baseline", "ort-cached", "py-strong", "http-floor")


def parse(path: Path) -> dict | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("BENCH_RESULT "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            r = {k: int(v) for k, v in fields.items()}
            failed = r["err_status"] + r["err_timeout"] + r["err_connect"] + r["err_read"] + r["err_write"]
            ok = max(r["requests"] - r["err_status"], 0)
            r["rps"] = ok / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["failed"] = failed
            return r
    return None


def median_round(results: Path, model: str, server: str) -> dict | None:
    rounds = [parse(p) for p in sorted(results.glob(f"wrk-{model}-{server}-r*.txt"))]
    rounds = sorted((r for r in rounds if r is not None), key=lambda r: r["rps"])
    if not rounds:
        return None
    best = dict(rounds[len(rounds) // 2])
    best["rounds"] = len(rounds)
    best["spread"] = f"{rounds[0]['rps']:.1f}–{rounds[-1]['rps']:.1f}" if len(rounds) > 1 else ""
    return best


def ms(us: int) -> str:
    if us < 1_000:
        return f"{us / 1000:.3f}"
    return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(argv[0])
    print("| model | server | req/s | p50 (ms) | p99 (ms) | failed | attesta ÷ baseline | attesta ÷ ort-cached | attesta ÷ py-strong |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in argv[1:]:
        rows = {s: median_round(results, model, s) for s in SERVERS}
        ours = rows["attesta"]

        def ratio(other: str, bold: bool) -> str:
            theirs = rows[other]
            if not ours or not theirs or theirs["rps"] <= 0:
                return ""
            text = f"{ours['rps'] / theirs['rps']:.1f}×"
            return f"**{text}**" if bold else text

        for server in SERVERS:
            r = rows[server]
            if r is None:
                continue
            cells = ["", "", ""]
            if server == "attesta":
                cells = [ratio("baseline", True), ratio("ort-cached", False), ratio("py-strong", True)]
            print(
                f"| {model} | {server} | {r['rps']:.1f}{' (' + r['spread'] + ')' if r['spread'] else ''} "
                f"| {ms(r['p50_us'])} | {ms(r['p99_us'])} "
                f"| {r['failed']} | {cells[0]} | {cells[1]} | {cells[2]} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
