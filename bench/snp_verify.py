"""Baseline SEV-SNP verifier in Python (cryptography / OpenSSL): the same
checks as the Rust pipeline, no caching: parse, chain VCEK/VLEK <- ASK/ASVK
<- pinned ARK (RSASSA-PSS SHA-384, salt 48), validity, ECDSA P-384 report
signature, reported TCB vs the certificate's SPL extensions, chip id, guest
policy. usage: snp_verify.py FIXTURES SECONDS -> key=value lines."""
import datetime, hashlib, struct, sys, time, warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ARK_MILAN = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
SPL = {"bl": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2",
       "snp": "1.3.6.1.4.1.3704.1.3.3", "ucode": "1.3.6.1.4.1.3704.1.3.8"}
HWID = "1.3.6.1.4.1.3704.1.4"


def ext(cert, oid):
    for e in cert.extensions:
        if e.oid.dotted_string == oid:
            return e.value.value
    return None


def der_int(b):
    assert b[0] == 2
    return int.from_bytes(b[2:2 + b[1]], "big")


def verify(report, vcek_der, ask, asvk, ark, ark_der, now):
    assert len(report) == 1184
    version, = struct.unpack_from("<I", report, 0)
    assert version in (2, 3, 5)
    policy, = struct.unpack_from("<Q", report, 8)
    vmpl, algo = struct.unpack_from("<II", report, 0x30)
    assert algo == 1 and vmpl <= 3
    flags, = struct.unpack_from("<I", report, 0x48)
    key = (flags >> 2) & 7
    assert hashlib.sha256(ark_der).hexdigest() == ARK_MILAN
    vcek = x509.load_der_x509_certificate(vcek_der)
    inter = asvk if key == 1 else ask
    for child, parent in ((inter, ark), (vcek, inter)):
        assert child.issuer == parent.subject
        parent.public_key().verify(child.signature, child.tbs_certificate_bytes, PSS, hashes.SHA384())
    for c in (vcek, inter, ark):
        assert c.not_valid_before_utc <= now <= c.not_valid_after_utc
    r = int.from_bytes(report[0x2A0:0x2A0 + 72], "little")
    s = int.from_bytes(report[0x2A0 + 72:0x2A0 + 144], "little")
    vcek.public_key().verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))
    tcb = report[0x180:0x188]
    got = {"bl": tcb[0], "tee": tcb[1], "snp": tcb[6], "ucode": tcb[7]}
    for k, oid in SPL.items():
        assert der_int(ext(vcek, oid)) == got[k]
    if key == 0:
        assert ext(vcek, HWID) == report[0x1A0:0x1E0]
    assert policy & (1 << 16) and not policy & (1 << 19) and not policy & (1 << 18)
    return True


def main():
    # AMD's VCEKs have serial 0, which cryptography warns about on every parse.
    warnings.simplefilter("ignore")
    fx, secs = Path(sys.argv[1]) / "sev-snp", float(sys.argv[2])
    roots = fx / "roots"
    load = lambda n: x509.load_pem_x509_certificate((roots / n).read_bytes())
    ark = load("milan_ark.pem")
    from cryptography.hazmat.primitives.serialization import Encoding
    ark_der = ark.public_bytes(Encoding.DER)
    ask, asvk = load("milan_ask.pem"), load("milan_asvk.pem")
    total_n, total_t = 0, 0.0
    for rep, cert, at in (("virtee_milan_v2_report.hex", "virtee_milan_v2_vcek.der", 1717200000),
                          ("trustee_milan_v2_report.bin", "trustee_milan_v2_vcek.der", 1717200000),
                          ("trustee_milan_v3_vlek_report.bin", "trustee_milan_v3_vlek.der", 1748736000)):
        data = (fx / rep).read_bytes()
        report = bytes.fromhex(data.decode().strip()) if rep.endswith(".hex") else data
        der = (fx / cert).read_bytes()
        now = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
        assert verify(report, der, ask, asvk, ark, ark_der, now)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < secs:
            verify(report, der, ask, asvk, ark, ark_der, now)
            n += 1
        t = time.perf_counter() - start
        print(f"doc={rep} python_per_s={n / t:.1f}")
        total_n, total_t = total_n + n, total_t + t
    print(f"doc=total python_per_s={total_n / total_t:.1f}")


if __name__ == "__main__":
    main()
