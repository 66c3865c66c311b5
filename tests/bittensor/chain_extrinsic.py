"""An independent decoder for attesta's signed extrinsics: the SDK's own SCALE codec
(scalecodec / cyscale, as async-substrate-interface 2.2.1 uses it) with real runtime metadata.

  chain_extrinsic.py METADATA.scale < request.json > answer.json

request: {"extrinsic": hex, "genesis_hash": hex, "era_block_hash": hex,
          "spec_version": n, "transaction_version": n}
answer: the decoded extrinsic (signer, era, nonce, tip, mode, call module/function/args), the
signing payload rebuilt the way the SDK's generate_signature_payload builds it, whether the
sr25519 signature verifies over it, and the extrinsic re-encoded by the SDK's codec from the
decoded fields (byte-equal to the input when our encoding is the SDK's).

Metadata V15 (the newest scalecodec reads; the SDK asks chains for V15 too).
"""

import json
import sys

from bittensor_wallet import Keypair
from hashlib import blake2b
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset


def runtime(path):
    rc = RuntimeConfigurationObject()
    rc.update_type_registry(load_type_registry_preset("core"))
    metadata = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(open(path, "rb").read()))
    metadata.decode()
    rc.add_portable_registry(metadata)
    return rc, metadata


def plain(v):
    """JSON-able form of decoded values (bytes as 0x-hex)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return v


def payload(rc, metadata, req, call_hex, era, nonce, tip):
    """The SDK's ExtrinsicPayloadValue for the known extensions (generate_signature_payload)."""
    ext = metadata.get_signed_extensions()
    p = rc.create_scale_object("ExtrinsicPayloadValue")
    p.type_mapping = [["call", "CallBytes"]]
    for name, field in [("CheckMortality", "era"), ("CheckNonce", "nonce"),
                        ("ChargeTransactionPayment", "tip"), ("CheckMetadataHash", "mode")]:
        if name in ext:
            p.type_mapping.append([field, ext[name]["extrinsic"]])
    for name, field in [("CheckSpecVersion", "spec_version"), ("CheckTxVersion", "transaction_version"),
                        ("CheckGenesis", "genesis_hash"), ("CheckMortality", "block_hash"),
                        ("CheckMetadataHash", "metadata_hash")]:
        if name in ext:
            p.type_mapping.append([field, ext[name]["additional_signed"]])
    p.encode({
        "call": call_hex, "era": era, "nonce": nonce, "tip": tip,
        "spec_version": req["spec_version"], "transaction_version": req["transaction_version"],
        "genesis_hash": "0x" + req["genesis_hash"], "block_hash": "0x" + req["era_block_hash"],
        "metadata_hash": None, "mode": "Disabled",
    })
    data = p.data.data
    return blake2b(data, digest_size=32).digest() if len(data) > 256 else data


def main():
    rc, metadata = runtime(sys.argv[1])
    req = json.loads(sys.stdin.read())
    raw = bytes.fromhex(req["extrinsic"])
    x = rc.create_scale_object("Extrinsic", data=ScaleBytes(raw), metadata=metadata)
    x.decode()
    v = x.value
    call = rc.create_scale_object("Call", metadata=metadata)
    call.encode({"call_module": v["call"]["call_module"], "call_function": v["call"]["call_function"],
                 "call_args": {a["name"]: a["value"] for a in v["call"]["call_args"]}})
    call_hex = call.data.to_hex()
    era = v["era"]
    era_value = "00" if era == "00" else {"period": era[0], "phase": era[1]}
    signed = payload(rc, metadata, req, call_hex, era_value, v["nonce"], v["tip"])
    sig = v["signature"]["Sr25519"]
    signer = v["address"]
    verifies = Keypair(public_key=signer, ss58_format=42).verify(signed, sig)
    again = rc.create_scale_object("Extrinsic", metadata=metadata)
    again.encode({
        "account_id": signer, "signature": sig, "signature_version": 1,
        "call_function": v["call"]["call_function"], "call_module": v["call"]["call_module"],
        "call_args": {a["name"]: a["value"] for a in v["call"]["call_args"]},
        "nonce": v["nonce"], "era": era_value, "tip": v["tip"], "mode": "Disabled",
    })
    print(json.dumps(plain({
        "signer": signer, "era": era, "nonce": v["nonce"], "tip": v["tip"],
        "mode": v.get("mode"), "call_module": v["call"]["call_module"],
        "call_function": v["call"]["call_function"],
        "call_args": {a["name"]: a["value"] for a in v["call"]["call_args"]},
        "call_hex": call_hex, "payload": "0x" + bytes(signed).hex(),
        "signature_verifies": bool(verifies), "reencoded": again.data.to_hex(),
    })))


main()
