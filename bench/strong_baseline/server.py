#!/usr/bin/env python3
"""A strong Python inference server for the /infer benchmark: what a
competent user would write to serve ONNX models with onnxruntime.

Written by us for the benchmark. Same request and response format as
OpenGradient's node (``{"ipfs_hash", "model_inputs"}`` in, ``{"output",
"model_hash"}`` out), but:

* Starlette on uvicorn, one process;
* one cached ``InferenceSession`` per model (1 intra-op thread, sequential
  execution) and the file's SHA-256 computed once;
* every input tensor's fixed-point numbers decoded in one vectorised numpy
  step (``values / 10**decimals`` over arrays), not number by number;
* the run off the event loop (Starlette's thread pool: onnxruntime releases
  the GIL), so requests on several connections use several cores;
* errors answered 400 with a JSON body.

Usage:
  server.py --port 8002 --model CID=PATH ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NUMPY_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
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


class Model:
    def __init__(self, path: str) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.types = {i.name: NUMPY_DTYPES.get(i.type) for i in self.session.get_inputs()}
        with open(path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()


def decode(tensor: dict, dtype) -> np.ndarray:
    """One tensor's fixed-point values, decoded in one vectorised step."""
    values = tensor["values"]
    n = len(values)
    v = np.fromiter((x["value"] for x in values), dtype=np.float64, count=n)
    d = np.fromiter((x["decimals"] for x in values), dtype=np.int64, count=n)
    arr = v / np.power(10.0, d)
    return arr.reshape(tensor["shape"]).astype(dtype, copy=False)


def make_app(models: dict[str, Model]) -> Starlette:
    async def infer(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            model = models[body["ipfs_hash"]]
            inputs = json.loads(body["model_inputs"])
            feeds = {
                t["name"]: decode(t, model.types[t["name"]]) for t in inputs.get("numbers", [])
            }
            for t in inputs.get("strings", []):
                feeds[t["name"]] = np.array(t["values"], dtype=object).reshape(t["shape"])
        except (KeyError, ValueError, TypeError) as e:
            return JSONResponse({"error": {"code": "bad_request", "message": str(e)}}, 400)
        try:
            outputs = await run_in_threadpool(model.session.run, None, feeds)
        except Exception as e:  # noqa: BLE001 - any onnxruntime failure is the request's
            return JSONResponse({"error": {"code": "inference_failed", "message": str(e)}}, 400)
        names = [o.name for o in model.session.get_outputs()]
        out = [
            {
                "name": name,
                "shape": list(arr.shape),
                "result": arr.tolist(),
                "type": "string" if arr.dtype == object else "number",
            }
            for name, arr in zip(names, outputs)
        ]
        return Response(
            json.dumps({"output": out, "model_hash": model.sha256}),
            media_type="application/json",
        )

    return Starlette(routes=[Route("/infer", infer, methods=["POST"])])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="strong Python ONNX server (benchmark baseline)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", action="append", default=[], metavar="CID=PATH")
    args = ap.parse_args(argv)
    models = {}
    for spec in args.model:
        cid, path = spec.split("=", 1)
        models[cid] = Model(path)
    uvicorn.run(make_app(models), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
