"""An independent SCALE decoder for the chain tests: scalecodec (the `cyscale` wheel the
Bittensor SDK 10.5.0 venv installs) given the same runtime metadata, plus xxhash/hashlib.

    chain_oracle.py neurons METADATA HEX|-      -> JSON list of decoded NeuronInfoLite
    chain_oracle.py storage-key METADATA HEX... -> JSON list of {pallet, entry, args}

scalecodec 0.5 reads metadata V14/V15 only; for V16 blobs pass `--hashers` facts instead
(see storage-key-hashers). Nothing here imports attesta code.
"""
import hashlib
import json
import sys

import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset
from scalecodec.utils.ss58 import ss58_encode


def load(path):
    rc = RuntimeConfigurationObject()
    rc.update_type_registry(load_type_registry_preset("core"))
    md = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(open(path, "rb").read()))
    md.decode()
    rc.add_portable_registry(md)
    return rc, md


def twox128(b):
    return xxhash.xxh64(b, seed=0).intdigest().to_bytes(8, "little") + xxhash.xxh64(
        b, seed=1
    ).intdigest().to_bytes(8, "little")


def twox64(b):
    return xxhash.xxh64(b, seed=0).intdigest().to_bytes(8, "little")


def blake2_128(b):
    return hashlib.blake2b(b, digest_size=16).digest()


def account(v):
    if isinstance(v, str) and v.startswith("0x"):
        return ss58_encode(v, 42)
    if isinstance(v, (list, tuple)):
        return ss58_encode(bytes(v).hex(), 42)
    return v


def neurons(meta_path, hexdata):
    rc, md = load(meta_path)
    inner = md.value[1]
    ver = list(inner.keys())[0]
    out_ty = None
    for a in inner[ver]["apis"]:
        if a["name"] == "NeuronInfoRuntimeApi":
            for m in a["methods"]:
                if m["name"] == "get_neurons_lite":
                    out_ty = m["output"]
    if hexdata == "-":
        hexdata = sys.stdin.read().strip()
    data = bytes.fromhex(hexdata.removeprefix("0x"))

    def decode(b):
        obj = rc.create_scale_object(f"scale_info::{out_ty}", data=ScaleBytes(b))
        val = obj.decode()
        if obj.data.offset != len(b):
            raise ValueError("trailing bytes")
        return val

    try:
        val = decode(data)
    except Exception:
        # Older runtimes wrapped the answer in a Vec<u8>.
        wrapped = rc.create_scale_object("Vec<u8>", data=ScaleBytes(data))
        raw = wrapped.decode()
        val = decode(bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw))
    res = []
    for n in val:
        ax = n["axon_info"]
        res.append(
            {
                "uid": n["uid"],
                "netuid": n["netuid"],
                "hotkey": account(n["hotkey"]),
                "coldkey": account(n["coldkey"]),
                "ip": int(ax["ip"]),
                "port": ax["port"],
                "ip_type": ax["ip_type"],
                "validator_permit": n["validator_permit"],
                "stake": sum(int(s[1]) for s in n["stake"]),
            }
        )
    return res


def storage_key(meta_path, hexkey):
    """Finds the entry by its hashed prefix, then reads every key back from the hashers."""
    rc, md = load(meta_path)
    key = bytes.fromhex(hexkey.removeprefix("0x"))
    for pallet in md.pallets:
        st = pallet.value["storage"]
        if not st:
            continue
        if key[:16] != twox128(st["prefix"].encode()):
            continue
        for fn in pallet.storage:
            name = fn.value["name"]
            if key[16:32] != twox128(name.encode()):
                continue
            rest = key[32:]
            types = fn.get_params_type_string()
            hashers = fn.get_param_hashers()
            args = []
            for ty, h in zip(types, hashers):
                if h == "Identity":
                    pre = b""
                elif h == "Blake2_128Concat":
                    pre, rest = rest[:16], rest[16:]
                elif h == "Twox64Concat":
                    pre, rest = rest[:8], rest[8:]
                else:
                    raise ValueError(f"opaque hasher {h}")
                obj = rc.create_scale_object(ty, data=ScaleBytes(rest))
                v = obj.decode(check_remaining=False)
                enc = rest[: obj.data.offset]
                rest = rest[obj.data.offset :]
                want = {"Identity": b"", "Blake2_128Concat": blake2_128(enc), "Twox64Concat": twox64(enc)}[h]
                if pre != want:
                    raise ValueError(f"{name}: {h} hash does not match its key")
                args.append(account(v) if len(enc) == 32 else v)
            if rest:
                raise ValueError(f"{name}: {len(rest)} bytes left")
            return {"pallet": pallet.name, "entry": name, "args": args}
    raise ValueError(f"no storage entry has the prefix of {hexkey}")


def main():
    cmd = sys.argv[1]
    if cmd == "neurons":
        print(json.dumps(neurons(sys.argv[2], sys.argv[3])))
    elif cmd == "storage-key":
        print(json.dumps([storage_key(sys.argv[2], k) for k in sys.argv[3:]]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
