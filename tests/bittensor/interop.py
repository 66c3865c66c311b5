"""The real Bittensor SDK (10.5.0) as the interop peer of attesta's Rust axon/dendrite.

Run with the SDK's venv (.venv-bittensor) and the repo's python/ on PYTHONPATH:

  interop.py wallet DIR                 write an unencrypted wallet DIR/miner (hotkey //Alice)
  interop.py dendrite ADDR HOTKEY NONCE ENVELOPE_B64_FILE COMPLETION_B64_FILE OUT.json
                                        call a Rust axon with the SDK's Dendrite (TeeAttestation,
                                        TeeInference, TeeCompletion) and with hand-made negative
                                        cases; write the outcomes
  interop.py axon DIR PORT              serve both synapses with the SDK's Axon (wallet DIR/miner)
"""

import asyncio
import base64
import json
import sys
import time

import bittensor as bt
import requests
from bittensor_wallet import Keypair, Wallet

from attesta_bittensor import TeeAttestation, TeeCompletion, TeeInference

# The SDK's Dendrite asks outside services for its public IP; tests talk to 127.0.0.1 only.
# 203.0.113.7 is a documentation address (TEST-NET-3), as in the fixtures' captures.
bt.utils.networking.get_external_ip = lambda: "203.0.113.7"


def wallet(path):
    w = Wallet(name="miner", hotkey="default", path=path)
    alice = Keypair.create_from_uri("//Alice")
    w.set_hotkey(alice, encrypt=False, overwrite=True)
    w.set_hotkeypub(alice, overwrite=True)
    w.set_coldkeypub(Keypair.create_from_uri("//Ferdie"), overwrite=True)
    return w


def axon_info(addr, hotkey):
    ip, port = addr.rsplit(":", 1)
    return bt.AxonInfo(version=0, ip=ip, port=int(port), ip_type=4, hotkey=hotkey, coldkey=hotkey)


def outcome(s):
    return {
        "is_success": s.is_success,
        "status_code": s.dendrite.status_code,
        "status_message": s.dendrite.status_message,
    }


async def official(addr, hotkey, nonce, envelope, completion):
    info = axon_info(addr, hotkey)
    bob = bt.Dendrite(wallet=Keypair.create_from_uri("//Bob"))
    att = await bob.call(info, TeeAttestation(nonce=nonce), timeout=30.0, deserialize=False)
    inf = await bob.call(info, TeeInference(sealed_request=envelope), timeout=30.0, deserialize=False)
    cmpl = await bob.call(info, TeeCompletion(sealed_request=completion), timeout=30.0, deserialize=False)
    eve = bt.Dendrite(wallet=Keypair.create_from_uri("//Eve"))
    blocked = await eve.call(info, TeeAttestation(nonce=nonce), timeout=30.0, deserialize=False)
    for d in (bob, eve):
        await d.aclose_session()
    return {
        "attestation": {**outcome(att), "platform": att.platform, "evidence": att.evidence, "keyset": att.keyset},
        "inference": {**outcome(inf), "sealed_response": inf.sealed_response},
        "completion": {
            **outcome(cmpl),
            "sealed_stream": cmpl.sealed_stream,
            "sealed_response": cmpl.sealed_response,
        },
        "blacklisted": outcome(blocked),
    }


def signed(addr, hotkey, nonce, signer="//Bob", claimed=None, nonce_ns=None, body_hash=None):
    """A request as the SDK's Dendrite builds it, with parts open to tampering."""
    d = bt.Dendrite(wallet=Keypair.create_from_uri("//Bob"))
    # timeout 12 s, as in the recorded cases: the window is 4 s + 12 s.
    s = d.preprocess_synapse_for_request(axon_info(addr, hotkey), TeeAttestation(nonce=nonce), 12.0)
    if nonce_ns is not None:
        s.dendrite.nonce = nonce_ns
    if claimed is not None:
        s.dendrite.hotkey = claimed
    h = body_hash if body_hash is not None else s.body_hash
    msg = f"{s.dendrite.nonce}.{s.dendrite.hotkey}.{hotkey}.{s.dendrite.uuid}.{h}"
    s.dendrite.signature = "0x" + Keypair.create_from_uri(signer).sign(msg).hex()
    headers = s.to_headers()
    headers["computed_body_hash"] = h
    return f"http://{addr}/TeeAttestation", headers, s.model_dump_json()


def post(req, drop=()):
    url, headers, body = req
    headers = {k: v for k, v in headers.items() if k not in drop}
    r = requests.post(url, headers={**headers, "content-type": "application/json"}, data=body, timeout=30)
    try:
        code = r.json().get("error", {}).get("code")
    except ValueError:
        code = None
    return {"status": r.status_code, "code": code, "axon_status": r.headers.get("bt_header_axon_status_code")}


def negatives(addr, hotkey, nonce):
    out = {}
    req = signed(addr, hotkey, nonce)
    out["first"] = post(req)
    out["replay"] = post(req)
    out["stale_nonce"] = post(signed(addr, hotkey, nonce, nonce_ns=time.time_ns() - 20_000_000_000))
    out["missing_signature"] = post(signed(addr, hotkey, nonce), drop=("bt_header_dendrite_signature",))
    out["wrong_signature"] = post(signed(addr, hotkey, nonce, signer="//Eve"))
    out["body_hash_mismatch"] = post(signed(addr, hotkey, nonce, body_hash="0" * 64))
    eve = Keypair.create_from_uri("//Eve").ss58_address
    out["blacklisted_hotkey"] = post(signed(addr, hotkey, nonce, signer="//Eve", claimed=eve))
    return out


def dendrite(addr, hotkey, nonce, envelope_file, completion_file, out_file):
    with open(envelope_file) as f:
        envelope = f.read().strip()
    with open(completion_file) as f:
        completion = f.read().strip()
    result = asyncio.run(official(addr, hotkey, nonce, envelope, completion))
    result["negative"] = negatives(addr, hotkey, nonce)
    with open(out_file, "w") as f:
        json.dump(result, f)


def axon(path, port):
    w = wallet(path)

    def attest(s: TeeAttestation) -> TeeAttestation:
        s.platform = "dev"
        s.evidence = base64.b64encode(b"evidence-for-" + s.nonce.encode()).decode()
        s.keyset = {"hpke_pk": "11" * 32, "sign_pk": "22" * 32}
        return s

    def infer(s: TeeInference) -> TeeInference:
        s.sealed_response = base64.b64encode(base64.b64decode(s.sealed_request)[::-1]).decode()
        return s

    a = bt.Axon(wallet=w, port=int(port), ip="127.0.0.1", external_ip="127.0.0.1")
    a.attach(forward_fn=attest).attach(forward_fn=infer)
    a.start()
    print(f"ready {w.hotkey.ss58_address}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wallet":
        print(wallet(args[0]).hotkey.ss58_address)
    elif cmd == "dendrite":
        dendrite(*args)
    elif cmd == "axon":
        axon(*args)
    else:
        sys.exit(f"unknown command {cmd}")
