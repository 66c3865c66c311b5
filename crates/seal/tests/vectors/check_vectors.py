#!/usr/bin/env python3
"""Independent check of attesta sealed-channel v2 test vectors.

Re-implements RFC 9180 base mode (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305), the v2 response key schedule (HKDF over the exported
secret, salted with enc and the node's fresh response nonce, as OHTTP),
the key-set digest, report data, receipt layout and Ed25519 signature from
the primitives in `cryptography`, and compares every value with the vector
file. It also checks that the two sealed answers to the one request use
different keys and nonces, so XOR-ing them gives nothing away (the v1 flaw).
Usage: check_vectors.py [v2.json]
"""
import hashlib
import hmac
import json
import pathlib
import struct
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
SUITE_KEM = b"KEM" + struct.pack(">H", KEM_ID)
SUITE_HPKE = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def expand(prk, info, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:n]


def labeled_extract(suite, salt, label, ikm):
    return extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, n):
    return expand(prk, struct.pack(">H", n) + b"HPKE-v1" + suite + label + info, n)


def derive_keypair(ikm):
    prk = labeled_extract(SUITE_KEM, b"", b"dkp_prk", ikm)
    sk = X25519PrivateKey.from_private_bytes(labeled_expand(SUITE_KEM, prk, b"sk", b"", 32))
    return sk, sk.public_key().public_bytes(*RAW)


def setup_base(shared_secret, info):
    psk_id_hash = labeled_extract(SUITE_HPKE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(SUITE_HPKE, b"", b"info_hash", info)
    ctx = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(SUITE_HPKE, shared_secret, b"secret", b"")
    key = labeled_expand(SUITE_HPKE, secret, b"key", ctx, 32)
    nonce = labeled_expand(SUITE_HPKE, secret, b"base_nonce", ctx, 12)
    exporter = labeled_expand(SUITE_HPKE, secret, b"exp", ctx, 32)
    return key, nonce, exporter


class Checks:
    """Counts matching values; the first mismatch ends the program."""

    def __init__(self):
        self.count = 0

    def eq(self, name, got, want):
        if got != want:
            sys.exit(f"MISMATCH {name}:\n  computed {got.hex() if isinstance(got, bytes) else got}\n  vector   {want.hex() if isinstance(want, bytes) else want}")
        self.count += 1


def check_node(node, eq):
    """The node's keys from its fixed secrets: (sk_r, pk_r, sign key, sign_pk, keyset digest)."""
    h = bytes.fromhex
    sk_r, pk_r = derive_keypair(h(node["hpke_ikm"]))
    eq("hpke_pk", pk_r, h(node["hpke_pk"]))
    sign = Ed25519PrivateKey.from_private_bytes(h(node["sign_seed"]))
    sign_pk = sign.public_key().public_bytes(*RAW)
    eq("sign_pk", sign_pk, h(node["sign_pk"]))
    digest = hashlib.sha256(b"attesta/v2/keyset" + pk_r + sign_pk).digest()
    eq("keyset_digest", digest, h(node["keyset_digest"]))
    return sk_r, pk_r, sign, sign_pk, digest


def receipt_encoding(r):
    """The receipt's signed layout, re-encoded from its JSON fields."""
    h = bytes.fromhex

    def var(b):
        return struct.pack(">H", len(b)) + b

    return (bytes([r["version"]]) + h(r["keyset_digest"]) + h(r["model_sha256"]) + h(r["request_digest"])
            + h(r["output_digest"]) + struct.pack(">Q", r["issued_at"]) + var(r["model_cid"].encode())
            + var(r["engine"].encode()) + var(r["engine_version"].encode()) + var(h(r["nonce"]))
            + var(r["fault"].encode()))


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("v2.json"))
    v = json.loads(path.read_text())
    h = bytes.fromhex
    checks = Checks()
    eq = checks.eq

    node, binding, req, resp, rc = v["node"], v["binding"], v["request"], v["response"], v["receipt"]
    second, refusals = v["second_response"], v["refusals"]
    sk_r, pk_r, sign, sign_pk, digest = check_node(node, eq)
    eq("keyset_encoding", b"\x01" + pk_r + sign_pk, h(node["keyset_encoding"]))

    nonce = h(binding["nonce"])
    eq("user_data", digest, h(binding["user_data"]))
    eq("public_key", b"\x01" + pk_r + sign_pk, h(binding["public_key"]))
    eq("report_data", hashlib.sha512(b"attesta/v2/report-data" + digest + nonce).digest(), h(binding["report_data"]))
    eq("nitriding", b"\x12\x20" + bytes(32) + b"\x12\x20" + digest, h(binding["nitriding_user_data_plain_http"]))

    # Sender side: encapsulate with the fixed ephemeral IKM.
    sk_e, enc = derive_keypair(h(req["ikm_e"]))
    dh = sk_e.exchange(X25519PublicKey.from_public_bytes(pk_r))
    eae = labeled_extract(SUITE_KEM, b"", b"eae_prk", dh)
    shared = labeled_expand(SUITE_KEM, eae, b"shared_secret", enc + pk_r, 32)
    info = b"attesta/v2 request" + digest
    eq("hpke_info", info, h(req["hpke_info"]))
    key, base_nonce, exporter = setup_base(shared, info)
    plaintext = req["plaintext"].encode()
    header = b"\x02\x01" + digest + enc
    envelope = header + ChaCha20Poly1305(key).encrypt(base_nonce, plaintext, header)
    eq("request envelope", envelope, h(req["envelope"]))
    request_digest = hashlib.sha256(plaintext).digest()
    eq("request_digest", request_digest, h(req["request_digest"]))

    # Receiver side recomputes the same shared secret from enc.
    eq("receiver shared secret", labeled_expand(SUITE_KEM, labeled_extract(SUITE_KEM, b"", b"eae_prk", sk_r.exchange(X25519PublicKey.from_public_bytes(enc))), b"shared_secret", enc + pk_r, 32), shared)

    # Response: exported secret, then a key and nonce per answer from the node's response nonce.
    secret = labeled_expand(SUITE_HPKE, exporter, b"sec", b"attesta/v2 response", 32)
    eq("response secret", secret, h(resp["secret"]))

    def answer_key(response_nonce):
        prk = extract(enc + response_nonce, secret)
        return expand(prk, b"key", 32), expand(prk, b"nonce", 12)

    def check_answer(name, a):
        rn = h(a["response_nonce"])
        key, aead_nonce = answer_key(rn)
        eq(name + " key", key, h(a["key"]))
        eq(name + " aead_nonce", aead_nonce, h(a["aead_nonce"]))
        header = b"\x02\x02" + rn
        plain = a["plaintext"].encode()
        env = header + ChaCha20Poly1305(key).encrypt(aead_nonce, plain, header + request_digest)
        eq(name + " envelope", env, h(a["envelope"]))
        eq(name + " opens", ChaCha20Poly1305(key).decrypt(aead_nonce, env[len(header):], header + request_digest), plain)
        return key, aead_nonce, env[len(header):], plain

    k1, n1, c1, r_plain = check_answer("response", resp)
    k2, n2, c2, p2 = check_answer("second response", second)
    eq("response plaintext", r_plain.decode(), resp["plaintext"])
    # Two answers to one request: distinct (key, nonce), so the v1 attack
    # (C1 xor C2 xor P2 = P1) yields noise, not the first answer.
    eq("distinct answer keys", (k1, n1) != (k2, n2), True)
    n = min(len(c1), len(c2))
    recovered = bytes(a ^ b ^ c for a, b, c in zip(c1[:n], c2[:n], p2[:n]))
    eq("xor of two answers reveals nothing", recovered != r_plain[:len(recovered)] and b"output" not in recovered, True)

    # Refusals before acceptance are plaintext JSON, never sealed.
    eq("replay refusal", json.loads(refusals["replay"])["error"]["code"], "replayed_request")
    eq("v1 refusal", json.loads(refusals["v1_envelope"])["error"]["code"], "unsupported_version")
    answer = json.loads(r_plain)
    output_text = resp["output"]
    eq("output verbatim in response", output_text.encode() in r_plain, True)

    # Receipt: re-encode from the JSON fields and sign.
    r = rc["json"]["receipt"]
    eq("receipt in answer", answer["receipt"], rc["json"])
    enc_r = receipt_encoding(r)
    eq("receipt encoding", enc_r, h(rc["encoding"]))
    eq("receipt keyset_digest", h(r["keyset_digest"]), digest)
    eq("receipt request_digest", h(r["request_digest"]), request_digest)
    eq("receipt output_digest", h(r["output_digest"]), hashlib.sha256(output_text.encode()).digest())
    eq("receipt version", r["version"], 2)
    msg = b"attesta/v2/receipt" + enc_r
    eq("signed message", msg, h(rc["signed_message"]))
    sig = sign.sign(msg)
    eq("signature", sig, h(rc["signature"]))
    sign.public_key().verify(sig, msg)
    print(f"ok: {checks.count} values of {path.name} match an independent implementation")


if __name__ == "__main__":
    main()
