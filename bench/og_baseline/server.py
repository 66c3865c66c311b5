#!/usr/bin/env python3
"""Baseline inference node that behaves as OpenGradient's TEE ONNX node does.

Written by us for the benchmark (no code taken from OpenGradient). What it
keeps from their design, on purpose, because the benchmark measures it:

* FastAPI + plain uvicorn (h11, one process), an ``async def`` handler, so a
  request's inference runs on the event loop and requests are served one at a
  time, as theirs are;
* a NEW ``onnxruntime.InferenceSession`` for every request, with onnxruntime's
  default session options (full graph optimisation, intra-op threads = cores);
* every number decoded one by one as ``Decimal(value) / 10**decimals`` and
  cast to the model input's dtype;
* the model file re-hashed (SHA-256) for every reply's ``model_hash``;
* every error answered with a bare 500.

What it leaves out, to be charitable to the baseline: their per-request
``print`` of every input and output tensor (``--og-logging`` turns it back
on), uvicorn's access log, and IPFS (models come from a local directory, as if
already cached by their storage manager).

``--cache-models`` is NOT OpenGradient's behaviour: it keeps one session and
the file's SHA-256 per model (the strongest simple Python node), so the
benchmark can show how much of the gap is per-request model loading and how
much is the rest of the stack.

Usage:
  server.py --port 8001 --store DIR            # DIR holds <cid>.onnx (or <cid>)
  server.py --port 8001 --model CID=PATH ...   # explicit mapping
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

# 10**18 is the largest scale a fixed-point number may use (float64 precision).
MAX_DECIMALS = 18

NUMPY_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class InferenceRequest(BaseModel):
    """OpenGradient's request: the model's CID and a JSON-encoded input string."""

    ipfs_hash: str
    model_inputs: str


class InferenceResponse(BaseModel):
    """OpenGradient's reply: one entry per model output, plus the file's SHA-256."""

    output: list
    model_hash: str


class ModelStore:
    """Maps a CID to a model file: explicit ``--model`` entries, then ``DIR/<cid>.onnx``."""

    def __init__(self, directory: Path | None, mapping: dict[str, Path]):
        self.directory = directory
        self.mapping = mapping

    def path(self, cid: str) -> str:
        if cid in self.mapping:
            return str(self.mapping[cid])
        # A CID is a single path component; anything else is a lookup error.
        if self.directory is not None and cid and "/" not in cid and cid not in (".", ".."):
            for candidate in (self.directory / f"{cid}.onnx", self.directory / cid):
                if candidate.is_file():
                    return str(candidate)
        raise FileNotFoundError(f"model {cid} not in store")


def decode_number(number: dict, np_dtype) -> object:
    decimals = int(number["decimals"])
    if decimals < 0 or decimals > MAX_DECIMALS:
        raise ValueError(f"decimals out of range: {decimals}")
    exact = Decimal(number["value"]) / Decimal(10**decimals)
    if np.issubdtype(np_dtype, np.floating):
        return float(exact)
    if np_dtype is np.bool_:
        return exact != 0
    # Integers truncate toward zero, as numpy's int conversion of a Decimal does.
    return int(exact)


def build_feed(session: ort.InferenceSession, model_inputs: str, log) -> dict:
    decoded = json.loads(model_inputs)
    numbers = {t["name"]: t for t in decoded.get("numbers", [])}
    strings = {t["name"]: t for t in decoded.get("strings", [])}
    feed = {}
    for meta in session.get_inputs():
        if meta.name in numbers:
            tensor = numbers[meta.name]
            np_dtype = NUMPY_DTYPES.get(meta.type)
            if np_dtype is None:
                raise TypeError(f"unsupported input type {meta.type}")
            flat = [decode_number(n, np_dtype) for n in tensor["values"]]
            array = np.array(flat, dtype=np_dtype).reshape(tensor["shape"])
        elif meta.name in strings:
            tensor = strings[meta.name]
            array = np.array(tensor["values"]).reshape(tensor["shape"])
        else:
            raise KeyError(f"input not found: {meta.name}")
        log("input tensor", meta.name, array)
        feed[meta.name] = array
    return feed


def serialize(session: ort.InferenceSession, results: list) -> list:
    output = []
    for meta, result in zip(session.get_outputs(), results):
        result = np.asarray(result)
        if issubclass(result.dtype.type, (np.floating, np.integer)):
            kind = "number"
        elif result.dtype == np.object_ or result.dtype.kind == "U":
            kind = "string"
        else:
            # OpenGradient's node has no case for other dtypes (bool): a 500.
            raise TypeError(f"unsupported output type {meta.type}")
        output.append({"name": meta.name, "shape": list(result.shape), "result": result.tolist(), "type": kind})
    return output


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def make_app(store: ModelStore, og_logging: bool, cache_models: bool) -> FastAPI:
    app = FastAPI()
    sessions: dict[str, ort.InferenceSession] = {}
    hashes: dict[str, str] = {}

    def session_for(path: str) -> ort.InferenceSession:
        if not cache_models:
            return ort.InferenceSession(path)
        if path not in sessions:
            sessions[path] = ort.InferenceSession(path)
        return sessions[path]

    def hash_of(path: str) -> str:
        if not cache_models:
            return sha256_file(path)
        if path not in hashes:
            hashes[path] = sha256_file(path)
        return hashes[path]

    def log(*args):
        if og_logging:
            print(*args, flush=True)

    @app.exception_handler(Exception)
    async def any_error(_request: Request, _exc: Exception):
        return PlainTextResponse("Internal Server Error", status_code=500)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, _exc: RequestValidationError):
        return PlainTextResponse("Internal Server Error", status_code=500)

    # async on purpose: the blocking inference runs on the event loop, as in
    # OpenGradient's node, so one request is served at a time.
    @app.post("/infer")
    async def infer(request: InferenceRequest) -> InferenceResponse:
        path = store.path(request.ipfs_hash)
        session = session_for(path)
        feed = build_feed(session, request.model_inputs, log)
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feed)
        log("inference result", results)
        output = serialize(session, results)
        return InferenceResponse(output=output, model_hash=hash_of(path))

    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="OpenGradient-style baseline node")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--store", type=Path, help="directory of <cid>.onnx files")
    ap.add_argument("--model", action="append", default=[], metavar="CID=PATH")
    ap.add_argument("--og-logging", action="store_true", help="print every tensor, as OpenGradient's node does")
    ap.add_argument(
        "--cache-models", action="store_true", help="reuse one session and hash per model (not what OG does)"
    )
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mapping = {}
    for entry in args.model:
        cid, sep, path = entry.partition("=")
        if not sep or not cid or not path:
            print(f"--model wants CID=PATH, got {entry!r}", file=sys.stderr)
            return 2
        mapping[cid] = Path(path)
    if args.store is None and not mapping:
        print("give --store DIR and/or --model CID=PATH", file=sys.stderr)
        return 2
    app = make_app(ModelStore(args.store, mapping), args.og_logging, args.cache_models)
    print(f"og-baseline pid {os.getpid()} on {args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
