"""Writes the LLM test and benchmark GGUFs, and extracts llama.cpp's vocab-only GGUFs.

Usage (run by the LLM venv's Python, made by scripts/setup-venv; scripts/make-test-gguf
is the same with that interpreter picked for you):

  .venv-llm/bin/python scripts/make_test_gguf.py vocab --out DIR [--name NAME ...] [--list]
  .venv-llm/bin/python scripts/make_test_gguf.py model NAME --out DIR
  .venv-llm/bin/python scripts/make_test_gguf.py list

No weights come from any model hub. Tokenizers are the real ones llama.cpp keeps as
vocab-only GGUFs under vendor/llama.cpp/models/ in the llama-cpp-python sdist (the version
installed in the venv, fetched with `pip download` into --sdist-cache). Weights are random,
drawn with seeds derived from the model family and the tensor name, so the same NAME gives
the same bytes run to run, and every quantisation of a family is the same model.

Models are named FAMILY-QUANT:
  families: tiny-spm   llama-spm vocab (32000), n_embd 256, 2 layers, 4 heads, 2 kv heads,
                       ff 512, ctx 512
            tiny-bpe   Llama 3 BPE vocab (128256), the tiny shape, tied embeddings
            tiny-qwen2 Qwen2 BPE vocab (151936), the tiny shape, tied embeddings
            small-spm  llama-spm vocab, n_embd 1024, 24 layers, 16 heads, 8 kv heads,
                       ff 4096, ctx 2048 (about 0.43 B parameters; for benchmarks)
  quants:   f32, f16 (written directly; 1-D norms stay F32), q8_0, q4_k (every 2-D weight
            in that type, quantised by llama.cpp's llama_model_quantize), q4_k_m (llama.cpp's
            Q4_K_M mix: Q4_K with Q6_K for the output and some attn_v/ffn_down tensors).
All are `general.architecture = llama`. Files land as DIR/NAME.gguf, written under a
temporary name and renamed, under a lock, so concurrent callers are safe; an existing
file is kept (--force rewrites it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomic_files import locked, temp_beside

# Written by hand for these test models (the llama-spm and llama-bpe vocab files carry no
# template). The SPM one has no special chat tokens to use, so roles are plain text and a
# turn ends with eos; the BPE one uses Llama 3's header and end-of-turn control tokens.
SPM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
LLAMA3_STYLE_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

# Output logits are scaled so their spread over the vocabulary is about this many units:
# greedy picks then have clear top-2 margins (mostly well above float noise) while the
# distribution is not one-hot, so sampling still has something to sample.
LOGIT_SCALE = 8.0
# With tied embeddings the token's own embedding stays in the residual stream and would win
# every argmax (the model repeats its input). A small embedding keeps that self-term below
# the spread of the other logits; the final norm's weights restore the logit scale.
TIED_EMBD_STD = 0.02
RMS_EPS = 1e-5


@dataclass(frozen=True)
class Shape:
    """Transformer dimensions of one model family."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int


@dataclass(frozen=True)
class Family:
    """A vocab, a shape and the rest of what makes one random model."""

    vocab: str
    shape: Shape
    tied: bool
    rope_base: float
    template: str | None  # None: the vocab file's own template
    base_type: str  # the unquantised file llama.cpp quantises from


TINY = Shape(n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx=512)
SMALL = Shape(n_embd=1024, n_layer=24, n_head=16, n_head_kv=8, n_ff=4096, n_ctx=2048)

FAMILIES = {
    "tiny-spm": Family("llama-spm", TINY, False, 10000.0, SPM_TEMPLATE, "f32"),
    "tiny-bpe": Family("llama-bpe", TINY, True, 500000.0, LLAMA3_STYLE_TEMPLATE, "f32"),
    "tiny-qwen2": Family("qwen2", TINY, True, 1000000.0, None, "f32"),
    # F16 as the quantisation source keeps the temporary file at half the size.
    "small-spm": Family("llama-spm", SMALL, False, 10000.0, SPM_TEMPLATE, "f16"),
}

# quant -> (llama_ftype, pure): how llama_model_quantize is asked for it.
QUANTS = {
    "f32": (0, True),
    "f16": (1, True),
    "q8_0": (7, True),
    "q4_k": (15, True),
    "q4_k_m": (15, False),
}


def log(msg: str) -> None:
    """Progress on stderr (stdout carries only the written paths)."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- vocab files


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version: the sdist the vocab files come from."""
    from importlib.metadata import version

    return version("llama-cpp-python")


def sdist(cache: Path) -> Path:
    """The llama-cpp-python sdist in `cache`, downloaded with pip on first use."""
    ver = llama_cpp_version()
    path = cache / f"llama_cpp_python-{ver}.tar.gz"
    with locked(cache / ".sdist.lock"):
        if path.is_file():
            return path
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            log(f"downloading the llama-cpp-python {ver} sdist")
            # --no-binary for this package only: its build dependencies may be wheels
            # (pip prepares the sdist's metadata, which needs them).
            cmd = [sys.executable, "-m", "pip", "download", "--quiet",
                   "--disable-pip-version-check", "--no-deps",
                   "--no-binary", "llama-cpp-python", f"llama-cpp-python=={ver}", "-d", tmp]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
            os.replace(Path(tmp) / path.name, path)
    return path


def vocab_prefix() -> str:
    """The folder of the vocab files inside the sdist."""
    return f"llama_cpp_python-{llama_cpp_version()}/vendor/llama.cpp/models/ggml-vocab-"


def list_vocabs(cache: Path) -> list[str]:
    """Names of the vocab GGUFs the sdist carries (`llama-spm` for ggml-vocab-llama-spm.gguf)."""
    prefix = vocab_prefix()
    with tarfile.open(sdist(cache), "r:gz") as tar:
        return sorted(
            m.name[len(prefix):-len(".gguf")]
            for m in tar.getmembers()
            if m.name.startswith(prefix) and m.name.endswith(".gguf")
        )


def vocab_file(out: Path, name: str) -> Path:
    """Where the vocab GGUF `name` lands in `out`."""
    return out / f"ggml-vocab-{name}.gguf"


def extract_vocabs(cache: Path, out: Path, names: list[str]) -> list[Path]:
    """Extracts the named vocab GGUFs (with llama.cpp's tokenizer test texts `.inp` and
    expected ids `.out` where present) into `out`; existing files are kept."""
    out.mkdir(parents=True, exist_ok=True)
    prefix = vocab_prefix()
    wanted = {f"{prefix}{n}.gguf{ext}": n for n in names for ext in ("", ".inp", ".out")}
    with locked(out / ".vocab.lock"):
        todo = {k: v for k, v in wanted.items() if not (out / Path(k).name).exists()}
        if todo:
            extract_members(sdist(cache), out, todo)
    missing = [n for n in names if not vocab_file(out, n).is_file()]
    if missing:
        raise SystemExit(f"no vocab GGUF named {missing} in the sdist; see `vocab --list`")
    return [vocab_file(out, n) for n in names]


def extract_members(tarball: Path, out: Path, members: dict[str, str]) -> None:
    """Copies the wanted tar members into `out` (flat), each via a temporary name."""
    with tarfile.open(tarball, "r:gz") as tar:
        for m in tar:
            if m.name not in members or not m.isfile():
                continue
            dest = out / Path(m.name).name
            tmp = temp_beside(dest)
            src = tar.extractfile(m)
            assert src is not None
            tmp.write_bytes(src.read())
            tmp.chmod(0o644)
            os.replace(tmp, dest)
            log(f"extracted {dest.name} ({m.size} bytes)")


# ---------------------------------------------------------------- random weights


def tensor_plan(shape: Shape, n_vocab: int, tied: bool) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape (rows=out, cols=in), kind) of every tensor, in file order."""
    e, hd = shape.n_embd, shape.n_embd // shape.n_head
    kv = shape.n_head_kv * hd
    plan = [("token_embd.weight", (n_vocab, e), "embd_tied" if tied else "embd")]
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (e,), "norm"),
            (b + "attn_q.weight", (e, e), "linear"),
            (b + "attn_k.weight", (kv, e), "linear"),
            (b + "attn_v.weight", (kv, e), "linear"),
            (b + "attn_output.weight", (e, e), "linear"),
            (b + "ffn_norm.weight", (e,), "norm"),
            (b + "ffn_gate.weight", (shape.n_ff, e), "linear"),
            (b + "ffn_up.weight", (shape.n_ff, e), "linear"),
            (b + "ffn_down.weight", (e, shape.n_ff), "linear"),
        ]
    plan.append(("output_norm.weight", (e,), "norm_tied" if tied else "norm"))
    if not tied:
        plan.append(("output.weight", (n_vocab, e), "output"))
    return plan


def rng_for(family: str, tensor: str) -> np.random.Generator:
    """A generator seeded by family and tensor name (independent of order and of the quant)."""
    seed = int.from_bytes(hashlib.sha256(f"{family}/{tensor}".encode()).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(seed))


def random_tensor(family: str, name: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """One tensor's float32 values.

    Linear weights are N(0, 1/fan_in) so every sub-layer keeps the residual stream at unit
    scale; norms are near 1; the output projection (or the tied embedding) is scaled so
    logits spread about LOGIT_SCALE.
    """
    rng = rng_for(family, name)
    x = rng.standard_normal(shape, dtype=np.float32)
    fan_in = shape[-1]
    if kind in ("norm", "norm_tied"):
        x = np.float32(1.0) + np.float32(0.1) * x
        fan_in = shape[0]
    scale = {
        "linear": 1.0 / np.sqrt(fan_in),
        "embd": 1.0,
        "output": LOGIT_SCALE / np.sqrt(fan_in),
        "embd_tied": TIED_EMBD_STD,
        "norm": 1.0,
        "norm_tied": LOGIT_SCALE / (TIED_EMBD_STD * np.sqrt(fan_in)),
    }[kind]
    x *= np.float32(scale)
    return x


def stored(x: np.ndarray, base_type: str) -> np.ndarray:
    """The array as written: norms (1-D) stay F32, as llama.cpp keeps them."""
    if base_type == "f16" and x.ndim > 1:
        return x.astype(np.float16)
    return x


# ---------------------------------------------------------------- GGUF writing


def add_metadata(w, name: str, fam: Family, n_vocab: int, ftype: int) -> None:
    """The llama.* hyperparameters and general.* keys llama.cpp needs."""
    s = fam.shape
    w.add_name(name)
    w.add_description("random weights for tests and benchmarks (scripts/make_test_gguf.py)")
    w.add_file_type(ftype)
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_rope_freq_base(fam.rope_base)
    w.add_rope_dimension_count(s.n_embd // s.n_head)
    w.add_vocab_size(n_vocab)


def copy_tokenizer(w, vocab_path: Path, template: str | None) -> int:
    """Copies every tokenizer.* key of the vocab GGUF (types kept); returns the vocab size."""
    import gguf

    reader = gguf.GGUFReader(vocab_path)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    if template is not None:
        if "tokenizer.chat_template" in reader.fields:
            raise SystemExit(f"{vocab_path.name} has its own chat template; use it")
        w.add_chat_template(template)
    elif "tokenizer.chat_template" not in reader.fields:
        raise SystemExit(f"{vocab_path.name} has no chat template and none is given")
    return len(reader.fields["tokenizer.ggml.tokens"].data)


def write_base(path: Path, name: str, fam: Family, vocab_path: Path, base_type: str) -> None:
    """Writes model `name` unquantised (F32, or F16 with F32 norms), one tensor at a time."""
    import gguf

    w = gguf.GGUFWriter(None, "llama")
    n_vocab = copy_tokenizer(w, vocab_path, fam.template)
    add_metadata(w, name, fam, n_vocab, QUANTS[base_type][0])
    plan = tensor_plan(fam.shape, n_vocab, fam.tied)
    for tensor, shape, _kind in plan:
        dtype = np.float16 if (base_type == "f16" and len(shape) > 1) else np.float32
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        w.add_tensor_info(tensor, shape, np.dtype(dtype), nbytes)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    family = parse_name(name)[0]
    for tensor, shape, kind in plan:
        w.write_tensor_data(stored(random_tensor(family, tensor, shape, kind), base_type))
    w.close()


def quantize(src: Path, dst: Path, quant: str) -> None:
    """llama.cpp's own quantiser (the kernels under test read exactly what it writes)."""
    import llama_cpp

    ftype, pure = QUANTS[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = pure
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc}) for {dst.name}")


def parse_name(name: str) -> tuple[str, str]:
    """FAMILY-QUANT -> (family, quant), or exit with the valid names."""
    for fam in FAMILIES:
        quant = name[len(fam) + 1:]
        if name.startswith(fam + "-") and quant in QUANTS:
            return fam, quant
    raise SystemExit(f"unknown model {name!r}; valid: {', '.join(all_names())}")


def all_names() -> list[str]:
    """Every model name this script makes."""
    return [f"{f}-{q}" for f in FAMILIES for q in QUANTS]


def make_model(name: str, out: Path, cache: Path, force: bool) -> Path:
    """Writes DIR/NAME.gguf (unless present), returning its path."""
    family, quant = parse_name(name)
    fam = FAMILIES[family]
    dest = out / f"{name}.gguf"
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / f".{name}.lock"):
        if dest.is_file() and not force:
            return dest
        (vocab_path,) = extract_vocabs(cache, out, [fam.vocab])
        start = time.monotonic()
        tmp = temp_beside(dest)
        if quant in ("f32", "f16"):
            write_base(tmp, name, fam, vocab_path, quant)
        else:
            base = temp_beside(dest)
            try:
                write_base(base, name, fam, vocab_path, fam.base_type)
                quantize(base, tmp, quant)
            finally:
                base.unlink(missing_ok=True)
        tmp.chmod(0o644)
        os.replace(tmp, dest)
        log(f"wrote {dest.name}: {dest.stat().st_size} bytes in {time.monotonic() - start:.1f} s")
    return dest


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vocab", help="extract vocab-only GGUFs from the llama-cpp-python sdist")
    v.add_argument("--out", type=Path, required=True, help="folder for ggml-vocab-NAME.gguf")
    v.add_argument("--name", action="append", default=None,
                   help="vocab to extract (repeatable; default: all)")
    v.add_argument("--list", action="store_true", help="only print the vocab names available")
    m = sub.add_parser("model", help="write one random-weight model")
    m.add_argument("name", help="FAMILY-QUANT, e.g. tiny-spm-q8_0 (see `list`)")
    m.add_argument("--out", type=Path, required=True, help="folder for NAME.gguf")
    m.add_argument("--force", action="store_true", help="rewrite an existing file")
    sub.add_parser("list", help="print every model name")
    for s in (v, m):
        s.add_argument("--sdist-cache", type=Path, default=None,
                       help="folder keeping the downloaded sdist (default: OUT/sdist)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.cmd == "list":
        print("\n".join(all_names()))
        return 0
    cache = args.sdist_cache or args.out / "sdist"
    cache.mkdir(parents=True, exist_ok=True)
    if args.cmd == "vocab":
        if args.list:
            print("\n".join(list_vocabs(cache)))
            return 0
        names = args.name or list_vocabs(cache)
        for path in extract_vocabs(cache, args.out, names):
            print(path)
        return 0
    print(make_model(args.name, args.out, cache, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
