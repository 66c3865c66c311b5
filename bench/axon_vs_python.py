"""Benchmark (not a test): request overhead of `attesta axon` vs the SDK 10.5.0 Python
axon on the same synapse (TeeAttestation) and the same load.

Run with the SDK's venv:  .venv-bittensor/bin/python bench/axon_vs_python.py [N] [CONCURRENCY]
(needs target/release/attesta). Requests are signed ahead of time by the SDK's own
Dendrite code (distinct uuid and fresh nonce each; keep N small enough that the run ends
within the Python axon's 16 s nonce window), then sent by one aiohttp client
with the given concurrency; prints req/s, p50 and the ratio. The Rust axon relays to a
stub node (an aiohttp server answering /v1/attestation with a constant body), the Python
axon answers from its forward function without any relay, so the comparison favours
Python. Everything on 127.0.0.1.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
from aiohttp import web
import bittensor as bt
from bittensor_wallet import Keypair, Wallet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from attesta_bittensor import TeeAttestation  # noqa: E402

bt.utils.networking.get_external_ip = lambda: "203.0.113.7"
ROOT = os.path.join(os.path.dirname(__file__), "..")
NONCE = "ab" * 32
ALICE = Keypair.create_from_uri("//Alice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signed_requests(port, n):
    d = bt.Dendrite(wallet=Keypair.create_from_uri("//Bob"))
    info = bt.AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4,
                       hotkey=ALICE.ss58_address, coldkey=ALICE.ss58_address)
    out = []
    for _ in range(n):
        d.uuid = os.urandom(16).hex()  # a new endpoint key per request, as attesta's dendrite
        s = d.preprocess_synapse_for_request(info, TeeAttestation(nonce=NONCE), 12.0)
        out.append((s.to_headers(), s.model_dump_json()))
    return out


async def load(port, reqs, concurrency):
    url = f"http://127.0.0.1:{port}/TeeAttestation"
    lat, ok = [], 0
    queue = list(reqs)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def worker():
            nonlocal ok
            while queue:
                headers, body = queue.pop()
                t = time.perf_counter()
                async with http.post(url, headers={**headers, "content-type": "application/json"}, data=body) as r:
                    await r.read()
                    ok += r.status == 200 and r.headers.get("bt_header_axon_status_code") == "200"
                lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return len(reqs) / wall, statistics.median(lat) * 1000, ok


async def stub_node(port):
    async def att(request):
        return web.json_response({"platform": "dev", "evidence": "ZXZpZGVuY2U=",
                                  "keyset": {"hpke_pk": "11" * 32, "sign_pk": "22" * 32},
                                  "nonce": request.query.get("nonce")})
    app = web.Application()
    app.router.add_get("/v1/attestation", att)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def wait_port(port, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


async def main(n, concurrency):
    node_port, rust_port, py_port = free_port(), free_port(), free_port()
    runner = await stub_node(node_port)
    rust = subprocess.Popen([os.path.join(ROOT, "target/release/attesta"), "axon",
                             "--node", f"http://127.0.0.1:{node_port}", "--listen", f"127.0.0.1:{rust_port}",
                             "--hotkey-uri", "//Alice", "--allow-any-caller"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = os.path.join(ROOT, "target", "bench-axon-wallet")
    w = Wallet(name="miner", hotkey="default", path=tmp)
    w.set_hotkey(ALICE, encrypt=False, overwrite=True)
    w.set_coldkeypub(ALICE, overwrite=True)

    def forward(s: TeeAttestation) -> TeeAttestation:
        s.platform, s.evidence = "dev", "ZXZpZGVuY2U="
        s.keyset = {"hpke_pk": "11" * 32, "sign_pk": "22" * 32}
        return s

    py = bt.Axon(wallet=w, port=py_port, ip="127.0.0.1", external_ip="127.0.0.1")
    py.attach(forward_fn=forward).start()
    try:
        wait_port(rust_port)
        wait_port(py_port)
        results = {}
        for name, port in (("rust", rust_port), ("python", py_port)):
            await load(port, signed_requests(port, 50), concurrency)  # warm-up
            results[name] = await load(port, signed_requests(port, n), concurrency)
            rps, p50, ok = results[name]
            print(f"{name:>6}: {rps:8.0f} req/s  p50 {p50:6.2f} ms  ok {ok}/{n}")
        print(f" ratio: {results['rust'][0] / results['python'][0]:.1f}x req/s (rust/python), "
              f"concurrency {concurrency}, {os.cpu_count()} CPUs, client included")
    finally:
        py.stop()
        rust.terminate()
        rust.wait()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 16))
