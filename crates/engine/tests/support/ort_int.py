"""Runs ONNX models with onnxruntime on integer inputs, exactly.

usage: ort_int.py CASES_JSON OUT_JSON
CASES_JSON: [{"model": path, "inputs": [{"name", "dtype", "shape", "values"}]}]
OUT_JSON: per case, the list of outputs as {"shape", "values"} (Python ints,
so int64 values beyond 2^53 survive), or {"error": text} when onnxruntime
refuses the model.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    cases_path, out_path = sys.argv[1:3]
    with open(cases_path) as f:
        cases = json.load(f)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    results = []
    for case in cases:
        feeds = {
            i["name"]: np.array(i["values"], dtype=i["dtype"]).reshape(i["shape"])
            for i in case["inputs"]
        }
        try:
            sess = ort.InferenceSession(
                case["model"], opts, providers=["CPUExecutionProvider"]
            )
            outputs = sess.run(None, feeds)
        except Exception as e:  # noqa: BLE001 -- reported to the Rust side
            results.append({"error": str(e)})
            continue
        results.append(
            [
                {"shape": list(o.shape), "values": [int(v) for v in o.reshape(-1)]}
                for o in outputs
            ]
        )
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
