#!/usr/bin/env python3
"""Baseline for the DCAP verification benchmark: the dcap-qvl Python
package (PyPI; Rust core) verifying the same fixture quotes with the same
collateral, parsed once (cached), at the same injected time, one thread.
Prints one `key=value` line per quote and a `total` line.

usage: dcap_verify.py FIXTURES_DIR [seconds-per-quote]
"""
import pathlib
import sys
import time

import dcap_qvl

QUOTES = [
    ("phala_sgx_v3_quote.bin", "phala_sgx_v3_collateral.json", 1751328000),
    ("phala_tdx_v4_quote.bin", "phala_tdx_v4_collateral.json", 1751328000),
]


def main():
    fixtures = pathlib.Path(sys.argv[1]) / "sgx-tdx"
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    n_total, t_total = 0, 0.0
    for q, c, now in QUOTES:
        quote = (fixtures / q).read_bytes()
        col = dcap_qvl.QuoteCollateralV3.from_json((fixtures / c).read_text())
        dcap_qvl.verify(quote, col, now)  # raises if it does not verify
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < secs:
            for _ in range(8):
                dcap_qvl.verify(quote, col, now)
            n += 8
        t = time.perf_counter() - start
        print(f"quote={q} per_s={n / t:.1f}")
        n_total, t_total = n_total + n, t_total + t
    print(f"quote=total per_s={n_total / t_total:.1f}")


main()
