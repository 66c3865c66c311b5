#!/usr/bin/env python3
"""Self-test of the baseline node: it must be right before it is a baseline.

Usage: .venv/bin/python bench/og_baseline/selftest.py

Builds the tiny test models and the MLP with scripts/make_models.py, starts
server.py on 127.0.0.1, and checks answers against onnxruntime run directly,
plus one negative case per check (each must be a bare 500, as OpenGradient's
node answers). Exit status 0 only if every case passes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: object) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def body(cid: str, numbers=(), strings=()) -> dict:
    return {"ipfs_hash": cid, "model_inputs": json.dumps({"numbers": list(numbers), "strings": list(strings)})}


def nums(name: str, shape: list[int], pairs: list[tuple[object, object]]) -> dict:
    return {"name": name, "shape": shape, "values": [{"value": v, "decimals": d} for v, d in pairs]}


class Cases:
    def __init__(self, url: str, models: Path):
        self.url = url
        self.models = models
        self.failures: list[str] = []

    def expect(self, label: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {label}{'' if ok else ': ' + detail}")
        if not ok:
            self.failures.append(label)

    def ok_reply(self, label: str, req: dict, model: str) -> dict | None:
        status, raw = post(self.url, req)
        if status != 200:
            self.expect(label, False, f"HTTP {status} {raw[:200]!r}")
            return None
        reply = json.loads(raw)
        want = hashlib.sha256((self.models / model).read_bytes()).hexdigest()
        if reply.get("model_hash") != want:
            self.expect(label, False, f"model_hash {reply.get('model_hash')} != {want}")
            return None
        return reply

    def bare_500(self, label: str, req: object) -> None:
        status, raw = post(self.url, req)
        self.expect(label, status == 500 and raw == b"Internal Server Error", f"HTTP {status} {raw[:120]!r}")

    def run(self) -> None:
        # float32: value / 10^decimals, ints and decimal strings both accepted.
        pairs = [(15, 1), ("-25", "2"), (7, 0), ("123456789", 9)]
        reply = self.ok_reply("float32 identity", body("tiny_identity_float32", [nums("x", [4], pairs)]), "tiny_identity_float32.onnx")
        if reply:
            got = reply["output"][0]
            want = np.array([1.5, -0.25, 7.0, 0.123456789], np.float32).tolist()
            self.expect(
                "float32 values, shape, type",
                got["result"] == want and got["shape"] == [4] and got["type"] == "number" and got["name"] == "y",
                json.dumps(got),
            )
        # float64 keeps precision that float32 would lose.
        reply = self.ok_reply("float64 identity", body("tiny_identity_float64", [nums("x", [2], [(123456789012, 6), (1, 18)])]), "tiny_identity_float64.onnx")
        if reply:
            self.expect("float64 values", reply["output"][0]["result"] == [123456.789012, 1e-18], json.dumps(reply["output"]))
        # Integers: decoded exactly, truncated toward zero when decimals > 0.
        for dtype in INT_DTYPES:
            signed = not dtype.startswith("u")
            pairs = [(12, 0), (99, 1), ((-37 if signed else 37), 0)]
            want = [12, 9, -37 if signed else 37]
            reply = self.ok_reply(f"{dtype} identity", body(f"tiny_identity_{dtype}", [nums("x", [3], pairs)]), f"tiny_identity_{dtype}.onnx")
            if reply:
                self.expect(f"{dtype} values", reply["output"][0]["result"] == want, json.dumps(reply["output"]))
        # Strings pass through as strings.
        reply = self.ok_reply(
            "string identity",
            body("tiny_identity_string", strings=[{"name": "x", "shape": [2], "values": ["hello", "wörld"]}]),
            "tiny_identity_string.onnx",
        )
        if reply:
            got = reply["output"][0]
            self.expect("string values and type", got["result"] == ["hello", "wörld"] and got["type"] == "string", json.dumps(got))
        # A real model against onnxruntime run directly, 2-D shape preserved.
        rng = np.random.default_rng(1)
        ints = rng.integers(-(10**6), 10**6, size=784).tolist()
        reply = self.ok_reply("mlp", body("mlp", [nums("x", [1, 784], [(v, 6) for v in ints])]), "mlp.onnx")
        if reply:
            x = (np.array(ints, np.float64) / 1e6).astype(np.float32).reshape(1, 784)
            want = ort.InferenceSession(str(self.models / "mlp.onnx")).run(None, {"x": x})[0]
            got = np.array(reply["output"][0]["result"], np.float32)
            self.expect("mlp equals onnxruntime", got.shape == (1, 10) and np.array_equal(got, want), f"{got} vs {want}")

        # Negative cases: each must fail, with OpenGradient's bare 500.
        ok_x = nums("x", [2], [(1, 0), (2, 0)])
        self.bare_500("unknown CID", body("not-a-model", [ok_x]))
        self.bare_500("CID with a path", body("../tiny_identity_float32", [ok_x]))
        self.bare_500("decimals > 18", body("tiny_identity_float32", [nums("x", [1], [(1, 19)])]))
        self.bare_500("negative decimals", body("tiny_identity_float32", [nums("x", [1], [(1, -1)])]))
        self.bare_500("non-numeric value", body("tiny_identity_float32", [nums("x", [1], [("one", 0)])]))
        self.bare_500("missing input", body("tiny_add_float32", [nums("a", [1], [(1, 0)])]))
        self.bare_500("shape/value count mismatch", body("tiny_identity_float32", [nums("x", [3], [(1, 0)])]))
        self.bare_500("uint8 overflow", body("tiny_identity_uint8", [nums("x", [1], [(256, 0)])]))
        self.bare_500("bool output (OG has no case for it)", body("tiny_identity_bool", [nums("x", [1], [(1, 0)])]))
        self.bare_500("model_inputs not JSON", {"ipfs_hash": "tiny_identity_float32", "model_inputs": "{"})
        self.bare_500("body without model_inputs", {"ipfs_hash": "tiny_identity_float32"})
        self.bare_500("body not JSON", b"not json")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        names = [f"tiny_identity_{d}.onnx" for d in ["float32", "float64", "string", "bool", *INT_DTYPES]]
        names += ["tiny_add_float32.onnx", "mlp.onnx"]
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_models.py"), str(models), "--only", *names],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        port = free_port()
        # The CID is the file stem, through the --store DIR/<cid>.onnx lookup.
        server = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--port", str(port), "--store", str(models)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print("baseline server did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
            cases = Cases(f"http://127.0.0.1:{port}/infer", models)
            cases.run()
        finally:
            server.terminate()
            server.wait(timeout=10)
    if cases.failures:
        print(f"{len(cases.failures)} failed: {', '.join(cases.failures)}")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
