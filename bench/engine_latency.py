"""Python onnxruntime latency on one model, for comparison with
crates/engine/examples/latency.rs (same input rules, sequential runs).

usage: engine_latency.py MODEL.onnx [--iters N] [--threads T] [--dim NAME=VALUE]... [--int-max K]
       [--shape D,D,..] [--input NAME=D,D,..]... [--fill NAME=VALUE]...
Prints one JSON line.
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort

TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--int-max", type=int, default=100)
    ap.add_argument("--shape", default=None, help="shape of the first input, e.g. 1,3,48,192")
    ap.add_argument("--input", action="append", default=[], help="NAME=D,D,..: one input's shape")
    ap.add_argument("--fill", action="append", default=[], help="NAME=VALUE: one value everywhere")
    a = ap.parse_args()
    dims = dict((k, int(v)) for k, v in (d.split("=", 1) for d in a.dim))
    shapes = {k: [int(d) for d in v.split(",") if d] for k, v in (i.split("=", 1) for i in a.input)}
    fills = dict((k, float(v)) for k, v in (f.split("=", 1) for f in a.fill))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t = time.perf_counter()
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3

    rng = np.random.default_rng(42)
    feeds = {}
    for ix, inp in enumerate(sess.get_inputs()):
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in inp.shape]
        if ix == 0 and a.shape:
            shape = [int(d) for d in a.shape.split(",")]
        elif inp.name in shapes:
            shape = shapes[inp.name]
        dt = TYPES[inp.type]
        if inp.name in fills:
            feeds[inp.name] = np.full(shape, fills[inp.name], dtype=dt)
        elif np.issubdtype(dt, np.floating):
            feeds[inp.name] = (rng.random(shape) * 2 - 1).astype(dt)
        elif "mask" in inp.name:
            feeds[inp.name] = np.ones(shape, dtype=dt)
        else:
            feeds[inp.name] = rng.integers(0, max(a.int_max, 1), size=shape).astype(dt)

    t = time.perf_counter()
    sess.run(None, feeds)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(max(a.iters // 10, 3)):
        sess.run(None, feeds)
    times = []
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({
        "engine": "onnxruntime",
        "version": ort.__version__,
        "model": a.model,
        "threads": a.threads,
        "iters": len(times),
        "load_ms": load_ms,
        "first_run_ms": first_ms,
        "p50_ms": times[len(times) // 2],
        "mean_ms": statistics.fmean(times),
        "min_ms": times[0],
    }))


if __name__ == "__main__":
    main()
