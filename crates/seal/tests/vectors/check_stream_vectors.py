#!/usr/bin/env python3
"""Independent check of attesta sealed-stream v2 test vectors.

Re-derives, from the primitives in `cryptography` (and the RFC 9180 code of
check_vectors.py beside this file), the request envelope, the exported
response secret, each stream's key and base nonce, every chunk's AEAD nonce
(base nonce XOR index), AAD and frame, the transcript digest, the summary,
the receipt encoding and its Ed25519 signature, and the whole body; and
checks that the two streams for one request use different keys and nonces.
Usage: check_stream_vectors.py [stream-v2.json]
"""
import hashlib
import json
import pathlib
import struct
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from check_vectors import (  # noqa: E402
    SUITE_HPKE, SUITE_KEM, Checks, check_node, derive_keypair, expand, extract, labeled_expand, labeled_extract,
    receipt_encoding, setup_base,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

FLAGS = {0: "data", 1: "final", 2: "error"}


def frame(content):
    return struct.pack(">I", len(content)) + content


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("stream-v2.json"))
    v = json.loads(path.read_text())
    h = bytes.fromhex
    checks = Checks()
    eq = checks.eq

    node, req, st, rc, es = v["node"], v["request"], v["stream"], v["receipt"], v["error_stream"]
    sk_r, pk_r, sign, sign_pk, digest = check_node(node, eq)

    sk_e, enc = derive_keypair(h(req["ikm_e"]))
    dh = sk_e.exchange(X25519PublicKey.from_public_bytes(pk_r))
    shared = labeled_expand(SUITE_KEM, labeled_extract(SUITE_KEM, b"", b"eae_prk", dh), b"shared_secret", enc + pk_r, 32)
    info = b"attesta/v2 request" + digest
    key, base, exporter = setup_base(shared, info)
    plaintext = req["plaintext"].encode()
    header = b"\x02\x01" + digest + enc
    eq("request envelope", header + ChaCha20Poly1305(key).encrypt(base, plaintext, header), h(req["envelope"]))
    request_digest = hashlib.sha256(plaintext).digest()
    eq("request_digest", request_digest, h(req["request_digest"]))
    secret = labeled_expand(SUITE_HPKE, exporter, b"sec", b"attesta/v2 response", 32)
    eq("response secret", secret, h(req["secret"]))

    def check_stream(name, s):
        """Returns (key, base nonce, [(flag, plaintext)])."""
        rn = h(s["response_nonce"])
        prk = extract(enc + rn, secret)
        key, base_nonce = expand(prk, b"stream key", 32), expand(prk, b"stream nonce", 12)
        eq(name + " key", key, h(s["key"]))
        eq(name + " base_nonce", base_nonce, h(s["base_nonce"]))
        stream_header = b"\x02\x03" + rn
        eq(name + " header frame", frame(stream_header), h(s["header"]))
        body, opened = frame(stream_header), []
        for i, c in enumerate(s["chunks"]):
            flag = c["flag"]
            eq(f"{name} chunk {i} index", c["index"], i)
            last = i == len(s["chunks"]) - 1
            eq(f"{name} chunk {i} flag known", flag in FLAGS, True)
            eq(f"{name} chunk {i} only the last is last", (flag != 0) == last, True)
            nonce = (int.from_bytes(base_nonce, "big") ^ i).to_bytes(12, "big")
            eq(f"{name} chunk {i} aead_nonce", nonce, h(c["aead_nonce"]))
            chunk_header = bytes([flag]) + struct.pack(">Q", i)
            aad = stream_header + request_digest + chunk_header
            eq(f"{name} chunk {i} aad", aad, h(c["aad"]))
            plain = c["plaintext"].encode()
            f = frame(chunk_header + ChaCha20Poly1305(key).encrypt(nonce, plain, aad))
            eq(f"{name} chunk {i} frame", f, h(c["frame"]))
            body += f
            opened.append((flag, plain))
        eq(name + " body", body, h(s["body"]))
        return key, base_nonce, opened

    k1, n1, chunks = check_stream("stream", st)
    data = [p for f, p in chunks if f == 0]
    eq("stream ends with a final chunk", chunks[-1][0], 1)
    t = hashlib.sha256(b"attesta/v2/stream-transcript")
    for p in data:
        t.update(struct.pack(">Q", len(p)) + p)
    eq("transcript", t.digest(), h(st["transcript"]))
    summary = st["summary"]
    eq("summary", json.loads(summary), {"chunks": len(data), "transcript": t.hexdigest(), "output": json.loads(st["output"])})
    eq("output verbatim in summary", st["output"] in summary, True)
    final = json.loads(chunks[-1][1])
    eq("summary verbatim in final chunk", ('"summary":' + summary) in chunks[-1][1].decode(), True)
    eq("receipt in final chunk", final["receipt"], rc["json"])

    r = rc["json"]["receipt"]
    enc_r = receipt_encoding(r)
    eq("receipt encoding", enc_r, h(rc["encoding"]))
    eq("receipt request_digest", h(r["request_digest"]), request_digest)
    eq("receipt output_digest = sha256(summary)", h(r["output_digest"]), hashlib.sha256(summary.encode()).digest())
    eq("receipt model_hash", h(r["model_sha256"]), h(final["model_hash"]))
    sig = sign.sign(b"attesta/v2/receipt" + enc_r)
    eq("signature", sig, h(rc["signature"]))
    eq("signature JSON", rc["json"]["signature"], rc["signature"])

    k2, n2, err_chunks = check_stream("error stream", es)
    eq("error stream ends with an error chunk", err_chunks[-1][0], 2)
    eq("error chunk carries no receipt", list(json.loads(err_chunks[-1][1])), ["error"])
    eq("two streams, two keys and base nonces", k1 != k2 and n1 != n2, True)
    print(f"ok: {checks.count} values of {path.name} match an independent implementation")


if __name__ == "__main__":
    main()
