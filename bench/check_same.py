#!/usr/bin/env python3
"""Checks that two /infer servers give the same answer for the same body.

Usage: check_same.py BODY MODEL_FILE [NAME=]URL [[NAME=]URL ...]

Every server must answer 200 with the model file's SHA-256 as ``model_hash``
and the same outputs (names, shapes, types); numbers must agree within
``|a - b| <= 1e-4 * max(|a|, |b|) + 1e-7`` (relative, with a tiny absolute
floor for values at zero). The first URL is the reference. Exit 0 only when
all agree, so a benchmark of a wrong answer never runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.request

REL = 1e-4
ABS = 1e-7


def post(url: str, body: bytes) -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{url}: HTTP {e.code}: {e.read()[:500]!r}")


def flatten(x) -> list:
    if isinstance(x, list):
        return [y for item in x for y in flatten(item)]
    return [x]


def compare(ref: dict, got: dict, url: str) -> list[str]:
    problems = []
    ref_out = {o["name"]: o for o in ref["output"]}
    got_out = {o["name"]: o for o in got["output"]}
    if set(ref_out) != set(got_out):
        return [f"{url}: output names {sorted(got_out)} != {sorted(ref_out)}"]
    for name, r in ref_out.items():
        g = got_out[name]
        if list(r["shape"]) != list(g["shape"]):
            problems.append(f"{url}: {name} shape {g['shape']} != {r['shape']}")
            continue
        if r.get("type") != g.get("type"):
            problems.append(f"{url}: {name} type {g.get('type')} != {r.get('type')}")
        rv, gv = flatten(r["result"]), flatten(g["result"])
        if len(rv) != len(gv):
            problems.append(f"{url}: {name} has {len(gv)} values, want {len(rv)}")
            continue
        worst = 0.0
        for a, b in zip(rv, gv):
            if isinstance(a, str) or isinstance(b, str):
                if a != b:
                    problems.append(f"{url}: {name} string {b!r} != {a!r}")
                    break
                continue
            err = abs(float(a) - float(b))
            bound = REL * max(abs(float(a)), abs(float(b))) + ABS
            worst = max(worst, err / bound)
        if worst > 1.0:
            problems.append(f"{url}: {name} differs: worst error is {worst:.2f}x the tolerance")
        else:
            print(f"   {url}: {name}: {len(rv)} values agree (worst {worst:.3f}x tolerance)")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    body = open(argv[0], "rb").read()
    want_hash = hashlib.sha256(open(argv[1], "rb").read()).hexdigest()
    # "name=http://..." labels a server in messages; a bare URL is its own label.
    labelled = [a.split("=", 1) if "=" in a.split("://", 1)[0] else [a, a] for a in argv[2:]]
    urls = [label for label, _ in labelled]
    replies = [post(url, body) for _, url in labelled]
    problems = []
    for url, reply in zip(urls, replies):
        if reply.get("model_hash") != want_hash:
            problems.append(f"{url}: model_hash {reply.get('model_hash')} != sha256 of the file {want_hash}")
    for url, reply in zip(urls[1:], replies[1:]):
        problems += compare(replies[0], reply, url)
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
