#!/usr/bin/env python3
"""Real ONNX models that packages on the Python package registry ship inside their wheels.

Trained models nobody here made, for the engine's tests and benchmarks: PP-OCRv4's text
detector and recogniser (the `rapidocr-onnxruntime` wheel) and Silero VAD, a recurrent
voice-activity model whose graph branches with `If` (the `silero-vad` wheel). Each wheel
is fetched once with `pip download --no-deps` (nothing is installed: silero-vad would pull
in torch), its SHA-256 checked against the pin below, and the one model file extracted
and checked against its own pin. Anything that does not match is an error.

usage:
  registry_models.py list                        names, sources and sizes
  registry_models.py fetch --out DIR NAME...     writes DIR/NAME.onnx, prints the paths

Files are written under a temporary name and renamed, under a lock, so concurrent
callers (test processes) are safe; a file already there with the pinned hash is reused.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from atomic_files import locked, temp_beside


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class Model:
    wheel: Wheel
    member: str
    sha256: str
    what: str


RAPIDOCR = Wheel("rapidocr-onnxruntime", "1.4.4",
                 "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")
SILERO = Wheel("silero-vad", "6.2.3",
               "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8")

MODELS: dict[str, Model] = {
    "ocr-det": Model(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                     "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
                     "PP-OCRv4 text detector (DB, convolutional), x: float32 [N,3,H,W], H and W multiples of 32"),
    "ocr-rec": Model(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                     "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
                     "PP-OCRv4 text recogniser (SVTR-LCNet), x: float32 [N,3,48,W]"),
    "silero-vad": Model(SILERO, "silero_vad/data/silero_vad.onnx",
                        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
                        "Silero VAD v5 (LSTM, If on the sample rate), input float32 [1,512] at 16 kHz "
                        "or [1,256] at 8 kHz, state float32 [2,1,128], sr int64 scalar"),
    "silero-vad-op15": Model(SILERO, "silero_vad/data/silero_vad_16k_op15.onnx",
                             "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
                             "Silero VAD, opset 15 export (If whose branches differ in rank)"),
}


def log(msg: str) -> None:
    """Progress on stderr (stdout carries only the written paths)."""
    print(msg, file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel(cache: Path, w: Wheel) -> Path:
    """The pinned wheel in `cache`, downloaded on first use; its hash is checked every time."""
    path = cache / w.filename
    if not path.is_file():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            log(f"downloading {w.package} {w.version}")
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--no-deps", "--only-binary", ":all:", f"{w.package}=={w.version}", "-d", tmp]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
            got = Path(tmp) / w.filename
            if not got.is_file():
                raise SystemExit(f"pip wrote no {w.filename}: {sorted(os.listdir(tmp))}")
            os.replace(got, path)
    digest = sha256(path)
    if digest != w.sha256:
        path.unlink()
        raise SystemExit(f"{w.filename}: sha256 {digest}, pinned {w.sha256}: removed, refusing it")
    return path


def fetch(out: Path, name: str) -> Path:
    """Writes out/NAME.onnx from its pinned wheel (reused when already there and intact)."""
    m = MODELS.get(name)
    if m is None:
        raise SystemExit(f"no registry model named {name!r}; known: {', '.join(MODELS)}")
    dest = out / f"{name}.onnx"
    with locked(out / ".registry-models.lock"):
        if dest.is_file() and sha256(dest) == m.sha256:
            return dest
        with zipfile.ZipFile(wheel(out / "wheels", m.wheel)) as z:
            data = z.read(m.member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != m.sha256:
            raise SystemExit(f"{m.member} in {m.wheel.filename}: sha256 {digest}, pinned {m.sha256}")
        tmp = temp_beside(dest)
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        log(f"wrote {dest} ({len(data)} bytes)")
    return dest


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the models, their wheels and what they are")
    f = sub.add_parser("fetch", help="extract models into --out")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("names", nargs="+", metavar="NAME")
    a = ap.parse_args(argv)
    if a.cmd == "list":
        for name, m in MODELS.items():
            print(f"{name:16} {m.wheel.package}=={m.wheel.version} {m.member}\n{'':16} {m.what}")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "wheels").mkdir(exist_ok=True)
    for name in a.names:
        print(fetch(a.out, name))


if __name__ == "__main__":
    main(sys.argv[1:])
