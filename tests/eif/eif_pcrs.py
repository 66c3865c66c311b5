#!/usr/bin/env python3
"""Independent computation of a Nitro EIF's PCRs, for checking `attesta measure eif`.

Follows the EIF layout (aws-nitro-enclaves-image-format): a 548-byte big-endian header
(magic ".eif", u16 version, u16 flags, u64 default_mem, u64 default_cpus, u16 reserved,
u16 num_sections, u64 offsets[32], u64 sizes[32], u32 unused, u32 crc32), then sections of
(u16 type, u16 flags, u64 size, data). PCRs are SHA-384 registers extended once from zero:
PCR0 over kernel+cmdline+all ramdisks, PCR1 over kernel+cmdline+first ramdisk, PCR2 over
the later ramdisks, PCR8 over the DER of the signing certificate (signed images only).

Usage: eif_pcrs.py FILE  -> prints {"PCR0": hex, ...} as JSON; exits 1 on a bad CRC.
"""
import base64
import hashlib
import json
import struct
import sys
import zlib

KERNEL, CMDLINE, RAMDISK, SIGNATURE, METADATA = 1, 2, 3, 4, 5


def cbor_item(b, i):
    """Decodes one CBOR item (definite lengths; the subset serde/ciborium writes)."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        n = info
    else:
        width = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        n = int.from_bytes(b[i:i + width], "big")
        i += width
    if major == 0:
        return n, i
    if major in (2, 3):
        data = b[i:i + n]
        return (data if major == 2 else data.decode()), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = cbor_item(b, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = cbor_item(b, i)
            v, i = cbor_item(b, i)
            out[k] = v
        return out, i
    raise ValueError(f"unsupported CBOR major type {major}")


def extended(data_hash):
    return hashlib.sha384(b"\0" * 48 + data_hash.digest()).hexdigest()


def main(path):
    raw = open(path, "rb").read()
    header = raw[:548]
    magic, version, flags, mem, cpus, _res, nsec = struct.unpack(">4sHHQQHH", header[:28])
    assert magic == b".eif", "bad magic"
    crc_stored = struct.unpack(">I", header[544:548])[0]
    pcr0, pcr1, pcr2, pcr8 = (hashlib.sha384() for _ in range(4))
    signed = False
    ramdisks = 0
    pos = 548
    while pos + 12 <= len(raw):
        kind, _flags, size = struct.unpack(">HHQ", raw[pos:pos + 12])
        data = raw[pos + 12:pos + 12 + size]
        pos += 12 + size
        if kind in (KERNEL, CMDLINE):
            pcr0.update(data)
            pcr1.update(data)
        elif kind == RAMDISK:
            pcr0.update(data)
            (pcr1 if ramdisks == 0 else pcr2).update(data)
            ramdisks += 1
        elif kind == SIGNATURE:
            entries, _ = cbor_item(data, 0)
            cert = entries[0]["signing_certificate"]
            pem = bytes(cert).decode()
            body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
            pcr8.update(base64.b64decode("".join(body.split())))
            signed = True
    crc = zlib.crc32(raw[:544] + raw[548:]) & 0xFFFFFFFF
    if crc != crc_stored:
        print(f"crc mismatch: stored {crc_stored:08x} computed {crc:08x}", file=sys.stderr)
        sys.exit(1)
    out = {"PCR0": extended(pcr0), "PCR1": extended(pcr1), "PCR2": extended(pcr2)}
    if signed:
        out["PCR8"] = extended(pcr8)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
