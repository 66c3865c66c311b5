"""Runs a model in Python onnxruntime on inputs given as JSON; prints outputs as JSON.

Usage: ort_run.py MODEL INPUTS_JSON
INPUTS_JSON: {"name": {"dtype": "float32", "shape": [..], "data": [flat values]}}
Output: {"name": {"shape": [..], "data": [flat values]}} in model output order.
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inputs_path = sys.argv[1], sys.argv[2]
    with open(inputs_path) as f:
        spec = json.load(f)
    feed = {
        name: np.array(v["data"], dtype=v["dtype"] if v["dtype"] != "string" else object).reshape(v["shape"])
        for name, v in spec.items()
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feed)
    result = {}
    for name, value in zip(names, outs):
        arr = np.asarray(value)
        flat = arr.reshape(-1)
        if arr.dtype == object:
            data = [str(x) for x in flat]
        elif arr.dtype == np.bool_:
            data = [int(x) for x in flat]
        else:
            data = [float(x) if np.issubdtype(arr.dtype, np.floating) else int(x) for x in flat]
        result[name] = {"shape": list(arr.shape), "data": data}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
