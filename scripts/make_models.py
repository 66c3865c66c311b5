#!/usr/bin/env python3
"""Writes the benchmark and test ONNX models into OUTDIR.

Usage: .venv/bin/python scripts/make_models.py OUTDIR [--only NAME ...]

Every model is built with the onnx helper API from random weights drawn with
fixed seeds, so the files are byte-identical run to run (no weights come from
any model hub). Each file is checked with onnx.checker and run once in
onnxruntime before the script reports it.

Models:
  mlp.onnx              MLP 784-512-512-10, x float32 [batch,784] -> probs [batch,10]
  cnn.onnx              3x (Conv+Relu+MaxPool), Flatten, Gemm; x float32 [batch,1,28,28]
                        -> logits [batch,10]
  minilm.onnx           MiniLM-sized encoder (vocab 30522, hidden 384, 6 layers,
                        12 heads, FFN 1536, GELU erf form, LayerNormalization);
                        input_ids + attention_mask int64 [batch,seq] ->
                        sentence_embedding float32 [batch,384] (masked mean pooling)
  tiny_identity_<dtype>.onnx   one Identity per dtype: x [n] -> y [n]
  tiny_all_dtypes.onnx  every dtype at once: x_<dtype> [n] -> y_<dtype> [n]
  tiny_add_float32.onnx a + b (float32 [n]) -> sum [n]; a smallest real compute
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 17 is the first with LayerNormalization; IR 8 is what opset 17 needs
# and what older runtimes (tract, older onnxruntime) still read.
OPSET = 17
IR_VERSION = 8
PRODUCER = "attesta-make-models"

# Dtypes OpenGradient's codec can carry (numbers cast to the input dtype,
# strings as strings). The suffix is what appears in file and tensor names.
TINY_DTYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "float16": TensorProto.FLOAT16,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16,
    "uint32": TensorProto.UINT32,
    "uint64": TensorProto.UINT64,
    "bool": TensorProto.BOOL,
    "string": TensorProto.STRING,
}


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    """Wraps a graph with fixed metadata so serialisation is reproducible."""
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name=name)


def normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


# ---------------------------------------------------------------- MLP


def make_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(784_512)
    sizes = [784, 512, 512, 10]
    nodes, inits = [], []
    cur = "x"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        # He init keeps activations O(1) through the Relus; the last layer is
        # scaled down so the softmax is not saturated (a saturated softmax
        # would make the cross-server comparison trivially pass).
        std = (0.3 if last else 1.0) * np.sqrt(2.0 / fan_in)
        inits.append(init(f"w{i}", normal(rng, (fan_in, fan_out), std)))
        inits.append(init(f"b{i}", normal(rng, (fan_out,), 0.01)))
        out = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [out], name=f"gemm{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            cur = f"r{i}"
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax"))
    graph = helper.make_graph(
        nodes,
        "mlp_784_512_512_10",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return finish(graph)


# ---------------------------------------------------------------- CNN


def make_cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(28_28)
    channels = [1, 16, 32, 64]
    nodes, inits = [], []
    cur = "x"
    for i, (cin, cout) in enumerate(zip(channels, channels[1:])):
        std = np.sqrt(2.0 / (cin * 9))
        inits.append(init(f"conv{i}_w", normal(rng, (cout, cin, 3, 3), std)))
        inits.append(init(f"conv{i}_b", normal(rng, (cout,), 0.01)))
        nodes.append(
            helper.make_node(
                "Conv",
                [cur, f"conv{i}_w", f"conv{i}_b"],
                [f"c{i}"],
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                name=f"conv{i}",
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        nodes.append(
            helper.make_node(
                "MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2], name=f"pool{i}"
            )
        )
        cur = f"p{i}"
    # 28 -> 14 -> 7 -> 3 (floor), so 64 * 3 * 3 features.
    flat = 64 * 3 * 3
    nodes.append(helper.make_node("Flatten", [cur], ["flat"], axis=1, name="flatten"))
    inits.append(init("fc_w", normal(rng, (flat, 10), 0.3 * np.sqrt(2.0 / flat))))
    inits.append(init("fc_b", normal(rng, (10,), 0.01)))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc"))
    graph = helper.make_graph(
        nodes,
        "cnn_28x28",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return finish(graph)


# ---------------------------------------------------------------- MiniLM

VOCAB = 30522
HIDDEN = 384
LAYERS = 6
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
FFN = 1536
MAX_POS = 512


def make_minilm() -> onnx.ModelProto:
    rng = np.random.default_rng(30522)
    std = 0.02  # BERT's initializer range
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(init(name, array))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def dense(prefix: str, x: str, fan_in: int, fan_out: int) -> str:
        w = const(f"{prefix}.w", normal(rng, (fan_in, fan_out), std))
        b = const(f"{prefix}.b", np.zeros(fan_out, np.float32))
        return node("Add", [node("MatMul", [x, w], f"{prefix}.mm"), b], f"{prefix}.out")

    def layer_norm(prefix: str, x: str) -> str:
        g = const(f"{prefix}.gamma", np.ones(HIDDEN, np.float32))
        b = const(f"{prefix}.beta", np.zeros(HIDDEN, np.float32))
        return node("LayerNormalization", [x, g, b], f"{prefix}.out", axis=-1, epsilon=1e-12)

    # Shared constants.
    const("i64_0", np.array([0], np.int64))
    const("i64_1", np.array([1], np.int64))
    const("i64_2", np.array([2], np.int64))
    const("axis_1", np.array([1], np.int64))
    const("axes_1_2", np.array([1, 2], np.int64))
    const("axis_last", np.array([-1], np.int64))
    const("heads_shape", np.array([0, 0, HEADS, HEAD_DIM], np.int64))
    const("hidden_shape", np.array([0, 0, HIDDEN], np.int64))
    const("f_one", np.array(1.0, np.float32))
    const("f_half", np.array(0.5, np.float32))
    const("f_neg_big", np.array(-10000.0, np.float32))
    const("f_inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    const("f_scale", np.array(1.0 / np.sqrt(HEAD_DIM), np.float32))
    const("f_tiny", np.array(1e-9, np.float32))

    # Embeddings: word + position (sliced to seq) + token type 0, then LayerNorm.
    word = const("emb.word", normal(rng, (VOCAB, HIDDEN), std))
    pos = const("emb.pos", normal(rng, (MAX_POS, HIDDEN), std))
    tok = const("emb.type0", normal(rng, (HIDDEN,), std))
    we = node("Gather", [word, "input_ids"], "emb.word_out", axis=0)
    shape = node("Shape", ["input_ids"], "emb.ids_shape")
    seq = node("Slice", [shape, "i64_1", "i64_2", "i64_0"], "emb.seq_len")  # shape[1:2]
    pe = node("Slice", [pos, "i64_0", seq, "i64_0"], "emb.pos_out")
    emb = node("Add", [node("Add", [we, pe], "emb.sum1"), tok], "emb.sum2")
    hidden = layer_norm("emb.ln", emb)

    # Additive attention bias from the mask: 0 where attended, -1e4 where padded.
    mask_f = node("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    inv = node("Sub", ["f_one", mask_f], "mask.inv")
    bias2d = node("Mul", [inv, "f_neg_big"], "mask.bias2d")
    bias = node("Unsqueeze", [bias2d, "axes_1_2"], "mask.bias")  # [b,1,1,s]

    for layer in range(LAYERS):
        p = f"l{layer}"

        def heads(name: str, perm: list[int]) -> str:
            proj = dense(f"{p}.{name}", hidden, HIDDEN, HIDDEN)
            split = node("Reshape", [proj, "heads_shape"], f"{p}.{name}.split")
            return node("Transpose", [split], f"{p}.{name}.heads", perm=perm)

        q = heads("q", [0, 2, 1, 3])  # [b,h,s,d]
        k = heads("k", [0, 2, 3, 1])  # [b,h,d,s]
        v = heads("v", [0, 2, 1, 3])  # [b,h,s,d]
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), "f_scale"], f"{p}.scaled")
        probs = node("Softmax", [node("Add", [scores, bias], f"{p}.masked")], f"{p}.probs", axis=-1)
        ctx = node("MatMul", [probs, v], f"{p}.ctx")
        ctx = node("Transpose", [ctx], f"{p}.ctx.t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "hidden_shape"], f"{p}.ctx.merged")
        attn = dense(f"{p}.o", ctx, HIDDEN, HIDDEN)
        hidden = layer_norm(f"{p}.ln1", node("Add", [attn, hidden], f"{p}.res1"))

        up = dense(f"{p}.ffn_up", hidden, HIDDEN, FFN)
        # GELU, erf form: 0.5 * x * (1 + erf(x / sqrt 2)).
        erf = node("Erf", [node("Mul", [up, "f_inv_sqrt2"], f"{p}.gelu.scaled")], f"{p}.gelu.erf")
        gate = node("Mul", [node("Add", [erf, "f_one"], f"{p}.gelu.plus1"), "f_half"], f"{p}.gelu.gate")
        act = node("Mul", [up, gate], f"{p}.gelu.out")
        down = dense(f"{p}.ffn_down", act, FFN, HIDDEN)
        hidden = layer_norm(f"{p}.ln2", node("Add", [down, hidden], f"{p}.res2"))

    # Masked mean pooling, as sentence-transformers does for MiniLM.
    mask3 = node("Unsqueeze", [mask_f, "axis_last"], "pool.mask3")  # [b,s,1]
    summed = node("ReduceSum", [node("Mul", [hidden, mask3], "pool.masked"), "axis_1"], "pool.sum", keepdims=0)
    count = node("ReduceSum", [mask3, "axis_1"], "pool.count", keepdims=0)
    count = node("Max", [count, "f_tiny"], "pool.count_safe")
    node("Div", [summed, count], "sentence_embedding")

    graph = helper.make_graph(
        nodes,
        "minilm_l6_h384_random",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        inits,
    )
    return finish(graph)


# ---------------------------------------------------------------- tiny models


def make_tiny_identity(dtype: str) -> onnx.ModelProto:
    elem = TINY_DTYPES[dtype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="identity")],
        f"tiny_identity_{dtype}",
        [helper.make_tensor_value_info("x", elem, ["n"])],
        [helper.make_tensor_value_info("y", elem, ["n"])],
    )
    return finish(graph)


def make_tiny_all_dtypes() -> onnx.ModelProto:
    nodes, inputs, outputs = [], [], []
    for dtype, elem in TINY_DTYPES.items():
        nodes.append(helper.make_node("Identity", [f"x_{dtype}"], [f"y_{dtype}"], name=f"id_{dtype}"))
        inputs.append(helper.make_tensor_value_info(f"x_{dtype}", elem, [f"n_{dtype}"]))
        outputs.append(helper.make_tensor_value_info(f"y_{dtype}", elem, [f"n_{dtype}"]))
    return finish(helper.make_graph(nodes, "tiny_all_dtypes", inputs, outputs))


def make_tiny_add() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"], name="add")],
        "tiny_add_float32",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n"]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n"])],
    )
    return finish(graph)


def make_if_recurrent(on_data: bool = False) -> onnx.ModelProto:
    """An `If` whose condition comes from the input's shape (T > 1) and whose
    then-branch runs a GRU over the sequence, as exported recurrent audio
    models do; the else-branch projects the frames' mean. Symbolic batch and
    time dimensions, so the condition is only known once shapes are. With
    `on_data` the condition is a graph input (`use_gru`, a bool scalar):
    known only while running."""
    rng = np.random.default_rng(4242)
    feat, hidden = 8, 4
    w = normal(rng, (1, 3 * hidden, feat), 0.3)
    r = normal(rng, (1, 3 * hidden, hidden), 0.3)
    b = normal(rng, (1, 6 * hidden), 0.1)
    proj = normal(rng, (feat, hidden), 0.3)
    then_graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["x_tbf"], perm=[1, 0, 2], name="to_time_major"),
            helper.make_node("GRU", ["x_tbf", "gru_w", "gru_r", "gru_b"], ["", "y_h"], hidden_size=hidden, name="gru"),
            helper.make_node("Squeeze", ["y_h", "axis0"], ["then_out"], name="squeeze_dir"),
        ],
        "then_gru",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, ["batch", hidden])],
    )
    else_graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["frame"], axes=[1], keepdims=0, name="mean_time"),
            helper.make_node("MatMul", ["frame", "proj"], ["else_out"], name="project"),
        ],
        "else_project",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, ["batch", hidden])],
    )
    if on_data:
        nodes = []
        cond_inputs = [helper.make_tensor_value_info("use_gru", TensorProto.BOOL, [])]
        cond = "use_gru"
    else:
        nodes = [
            helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
            helper.make_node("Gather", ["x_shape", "one"], ["t_len"], axis=0, name="time_len"),
            helper.make_node("Greater", ["t_len", "one"], ["is_seq"], name="is_sequence"),
        ]
        cond_inputs = []
        cond = "is_seq"
    nodes.append(
        helper.make_node("If", [cond], ["y"], then_branch=then_graph, else_branch=else_graph, name="if_recurrent")
    )
    inits = [
        init("gru_w", w),
        init("gru_r", r),
        init("gru_b", b),
        init("proj", proj),
        init("axis0", np.array([0], dtype=np.int64)),
    ] + ([] if on_data else [init("one", np.array(1, dtype=np.int64))])
    graph = helper.make_graph(
        nodes,
        "if_recurrent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", feat])] + cond_inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    return finish(graph)


# ---------------------------------------------------------------- smoke run


def sample_feed(session) -> dict:
    """Deterministic inputs matching each session input (symbolic dims -> small sizes)."""
    rng = np.random.default_rng(7)
    feed = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else (2 if d == "batch" else 16 if d == "seq" else 4) for d in inp.shape]
        t = inp.type
        if inp.name == "input_ids":
            feed[inp.name] = rng.integers(0, VOCAB, size=shape, dtype=np.int64)
        elif inp.name == "attention_mask":
            mask = np.ones(shape, np.int64)
            mask[:, -3:] = 0
            feed[inp.name] = mask
        elif t == "tensor(string)":
            feed[inp.name] = np.array([f"s{i}" for i in range(int(np.prod(shape)))], dtype=object).reshape(shape)
        elif t == "tensor(bool)":
            feed[inp.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            np_dtype = {
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
            }[t]
            feed[inp.name] = (rng.random(shape) * 100).astype(np_dtype)
    return feed


def smoke_run(path: Path) -> str:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = sample_feed(session)
    outs = session.run(None, feed)
    for o in outs:
        if o.dtype.kind == "f" and not np.all(np.isfinite(o)):
            raise RuntimeError(f"{path.name}: non-finite output")
    # Identity models must return their input unchanged.
    if path.name.startswith("tiny_identity_") or path.name == "tiny_all_dtypes.onnx":
        for (name, value), out in zip(feed.items(), outs):
            if not np.array_equal(value, out):
                raise RuntimeError(f"{path.name}: {name} not returned unchanged")
    return ", ".join(f"{o.shape}" for o in outs)


def builders() -> dict:
    b = {
        "mlp.onnx": make_mlp,
        "cnn.onnx": make_cnn,
        "minilm.onnx": make_minilm,
        "tiny_all_dtypes.onnx": make_tiny_all_dtypes,
        "tiny_add_float32.onnx": make_tiny_add,
        "if_recurrent.onnx": make_if_recurrent,
        "if_recurrent_flag.onnx": lambda: make_if_recurrent(on_data=True),
    }
    for dtype in TINY_DTYPES:
        b[f"tiny_identity_{dtype}.onnx"] = lambda d=dtype: make_tiny_identity(d)
    return b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--only", nargs="*", help="file names to build (default: all)")
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    table = builders()
    names = args.only or list(table)
    for name in names:
        if name not in table:
            print(f"unknown model {name}; known: {', '.join(table)}", file=sys.stderr)
            return 2
        data = table[name]().SerializeToString()
        path = args.outdir / name
        path.write_bytes(data)
        shapes = smoke_run(path)
        digest = hashlib.sha256(data).hexdigest()
        print(f"{name}\t{len(data)}\t{digest}\t{shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
