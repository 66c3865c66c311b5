#!/usr/bin/env python3
"""Baseline for the Nitro verification benchmark: the checks OpenGradient's
verify_attestation.py does, done properly, with cbor2 + cryptography.

Per document: COSE_Sign1 structure and ES384; payload fields; ES384
signature by the leaf; every certificate signed by the next, up to a root
byte-identical to the pinned AWS root; every certificate valid at the
injected time; timestamp freshness; nonce (when present) and PCR0-2 against
a registry. No caching (as the original). Prints one `key=value` line per
document and a `total` line with verifications per second, single thread.

usage: nitro_verify.py FIXTURES_DIR [seconds-per-document]
"""
import base64
import datetime as dt
import hashlib
import pathlib
import sys
import time

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
DOCS = [
    ("veracruz_2022-11-09_euw1.cbor", 1668034320696),
    ("evervault_2023-09-18_debug.b64", 1695049410860),
    ("marlin_2024-02-26_aps1.cbor", 1708930921439),
]
MAX_AGE_MS = 300_000


class Invalid(Exception):
    pass


def verify(raw, root_der, now_ms, registry, nonce=None):
    doc = cbor2.loads(raw)
    if isinstance(doc, cbor2.CBORTag):
        if doc.tag != 18:
            raise Invalid("tag")
        doc = doc.value
    if not isinstance(doc, list) or len(doc) != 4:
        raise Invalid("not COSE_Sign1")
    protected, unprotected, payload, sig = doc
    if not isinstance(unprotected, dict) or not isinstance(payload, bytes) or len(sig) != 96:
        raise Invalid("structure")
    if cbor2.loads(protected) != {1: -35}:
        raise Invalid("alg")
    p = cbor2.loads(payload)
    if not isinstance(p.get("module_id"), str) or not p["module_id"]:
        raise Invalid("module_id")
    if p.get("digest") != "SHA384":
        raise Invalid("digest")
    if not isinstance(p.get("timestamp"), int):
        raise Invalid("timestamp")
    pcrs = p.get("pcrs")
    if not isinstance(pcrs, dict) or not 0 < len(pcrs) <= 32:
        raise Invalid("pcrs")
    for k, v in pcrs.items():
        if not isinstance(k, int) or not 0 <= k < 32 or len(v) not in (32, 48, 64):
            raise Invalid("pcr")
    for f in ("public_key", "user_data", "nonce"):
        v = p.get(f)
        if v is not None and (not isinstance(v, bytes) or len(v) > 1024):
            raise Invalid(f)
    cabundle = p.get("cabundle")
    if not isinstance(cabundle, list) or not cabundle:
        raise Invalid("cabundle")
    leaf = x509.load_der_x509_certificate(p["certificate"])
    chain = [leaf] + [x509.load_der_x509_certificate(c) for c in reversed(cabundle)]
    # signature by the leaf over Sig_structure
    sig_structure = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big")
    leaf.public_key().verify(encode_dss_signature(r, s), sig_structure, ec.ECDSA(hashes.SHA384()))
    # chain: each certificate issued by the next; root pinned by bytes
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    if cabundle[0] != root_der:
        raise Invalid("root")
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.timezone.utc)
    for c in chain:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise Invalid("validity")
    if not 0 <= now_ms - p["timestamp"] <= MAX_AGE_MS:
        raise Invalid("freshness")
    if nonce is not None and p.get("nonce") != nonce:
        raise Invalid("nonce")
    for i, want in registry.items():
        if pcrs.get(i) != want:
            raise Invalid(f"PCR{i}")
    return p


def main():
    fx = pathlib.Path(sys.argv[1]) / "nitro"
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    pem = (fx / "aws_nitro_enclaves_root_g1.pem").read_bytes()
    root_der = x509.load_pem_x509_certificate(pem).public_bytes(encoding=__import__(
        "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    assert hashlib.sha256(root_der).hexdigest() == ROOT_SHA256
    total_t = 0.0
    for name, ts in DOCS:
        data = (fx / name).read_bytes()
        raw = base64.b64decode(data) if name.endswith(".b64") else data
        now = ts + 30_000
        p = cbor2.loads(cbor2.loads(raw)[2])
        registry = {i: p["pcrs"][i] for i in (0, 1, 2)}
        nonce = p.get("nonce")
        # negative control: a flipped signature byte must fail
        bad = raw[:-1] + bytes([raw[-1] ^ 1])
        try:
            verify(bad, root_der, now, registry, nonce)
            raise SystemExit("baseline accepted a bad signature")
        except Exception:
            pass
        for _ in range(10):
            verify(raw, root_der, now, registry, nonce)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < budget:
            for _ in range(8):
                verify(raw, root_der, now, registry, nonce)
            n += 8
        per_s = n / (time.perf_counter() - start)
        total_t += 1 / per_s
        print(f"doc={name} python_per_s={per_s:.0f}")
    print(f"doc=total python_per_s={len(DOCS) / total_t:.0f}")


if __name__ == "__main__":
    main()
