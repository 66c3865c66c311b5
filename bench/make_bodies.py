#!/usr/bin/env python3
"""Writes one OpenGradient /infer request body per benchmark model.

Usage: make_bodies.py OUTDIR NAME=CID ...   (NAME is mlp, cnn or minilm)

Inputs are deterministic (fixed seed) and sent as fixed-point numbers the way
OpenGradient clients send them: ``{"value": int, "decimals": int}``. Both
servers get byte-identical bodies, so any difference in their answers is a
difference in the servers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SEQ = 128
VOCAB = 30522
FLOAT_DECIMALS = 6


def fixed_point_floats(rng: np.random.Generator, shape: list[int]) -> list[dict]:
    # Uniform [-1, 1) with 6 decimals; mixing int and string encodings exercises
    # both spellings the wire format allows.
    ints = rng.integers(-(10**FLOAT_DECIMALS), 10**FLOAT_DECIMALS, size=int(np.prod(shape)))
    out = []
    for i, v in enumerate(ints.tolist()):
        if i % 5 == 4:
            out.append({"value": str(v), "decimals": str(FLOAT_DECIMALS)})
        else:
            out.append({"value": v, "decimals": FLOAT_DECIMALS})
    return out


def integers(values: list[int]) -> list[dict]:
    return [{"value": v, "decimals": 0} for v in values]


def numbers_for(name: str, rng: np.random.Generator) -> list[dict]:
    if name == "mlp":
        shape = [1, 784]
        return [{"name": "x", "shape": shape, "values": fixed_point_floats(rng, shape)}]
    if name == "cnn":
        shape = [1, 1, 28, 28]
        return [{"name": "x", "shape": shape, "values": fixed_point_floats(rng, shape)}]
    if name == "minilm":
        # A 112-token sentence padded to 128, like a tokenizer's batch output.
        real = 112
        ids = [101] + rng.integers(1000, VOCAB, size=real - 2).tolist() + [102] + [0] * (SEQ - real)
        mask = [1] * real + [0] * (SEQ - real)
        return [
            {"name": "input_ids", "shape": [1, SEQ], "values": integers(ids)},
            {"name": "attention_mask", "shape": [1, SEQ], "values": integers(mask)},
        ]
    raise SystemExit(f"no request recipe for model {name!r}")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    for entry in argv[1:]:
        name, _, cid = entry.partition("=")
        rng = np.random.default_rng(sum(map(ord, name)))
        model_inputs = {"numbers": numbers_for(name, rng), "strings": []}
        body = {"ipfs_hash": cid, "model_inputs": json.dumps(model_inputs, separators=(",", ":"))}
        path = outdir / f"{name}.json"
        path.write_text(json.dumps(body, separators=(",", ":")))
        print(f"{name}\t{path}\t{path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
