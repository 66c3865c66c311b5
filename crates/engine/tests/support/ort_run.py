"""Runs an ONNX model with onnxruntime on raw little-endian inputs (float32 unless the
manifest gives a numpy "dtype", e.g. "<i8").

usage: ort_run.py MODEL INPUTS_JSON OUT_DIR
Writes OUT_DIR/out<i>.f64 (float64 little-endian) and OUT_DIR/outputs.json.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, manifest, out_dir = sys.argv[1:4]
    with open(manifest) as f:
        inputs = json.load(f)
    feeds = {
        i["name"]: np.fromfile(i["file"], dtype=i.get("dtype", "<f4")).reshape(i["shape"])
        for i in inputs
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    outputs = sess.run(None, feeds)
    meta = []
    for k, value in enumerate(outputs):
        arr = np.asarray(value, dtype=np.float64)
        path = os.path.join(out_dir, f"out{k}.f64")
        arr.astype("<f8").tofile(path)
        meta.append({"shape": list(arr.shape), "file": path})
    with open(os.path.join(out_dir, "outputs.json"), "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()
