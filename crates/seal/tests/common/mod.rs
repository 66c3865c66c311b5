//! Shared test helpers: deterministic RNG, fixtures, a dev TEE.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use attesta_attester::dev::{self, Clock, DevAttester, DevOptions, Entropy};
use attesta_attester::{AttestError, AttestRequest, Attester};
use attesta_evidence::{EvidenceVerifier, Policy, TrustedRoot, UnixTime, danger};
use attesta_seal::rand_core::{TryCryptoRng, TryRng};
use attesta_seal::{
    AcceptedRequest, NodeKeys, PublicKeySet, ReplayConfig, ReplayGuard, RequestPlaintext, sha256,
};

/// Deterministic byte stream: SHA-256(seed ‖ counter) blocks. Test-only.
pub struct TestRng {
    seed: u64,
    counter: u64,
    buf: Vec<u8>,
}

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng {
            seed,
            counter: 0,
            buf: Vec::new(),
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst.iter_mut() {
            if self.buf.is_empty() {
                self.counter += 1;
                let mut input = self.seed.to_le_bytes().to_vec();
                input.extend_from_slice(&self.counter.to_le_bytes());
                self.buf = sha256(&input).to_vec();
            }
            *d = self.buf.remove(0);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

/// Yields the given bytes, cyclically: pins the HPKE ephemeral IKM for vectors.
pub struct FixedRng(pub Vec<u8>, pub usize);

impl TryRng for FixedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst.iter_mut() {
            *d = self.0[self.1 % self.0.len()];
            self.1 += 1;
        }
        Ok(())
    }
}
impl TryCryptoRng for FixedRng {}

pub const T0_SECS: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

pub fn t(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

pub fn keys(seed: u64) -> NodeKeys {
    NodeKeys::generate(&mut TestRng::new(seed))
}

pub const MODEL: &str = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u";

pub fn request(issued_at: u64, nonce: Option<&str>) -> RequestPlaintext {
    RequestPlaintext {
        model: MODEL.into(),
        inputs: serde_json::value::RawValue::from_string(
            r#"{"numbers":[{"name":"x","shape":[1,3],"values":[{"value":"1337","decimals":3},{"value":"-2","decimals":0},{"value":"5","decimals":1}]}],"strings":[]}"#.into(),
        )
        .unwrap(),
        request_id: "req-1".into(),
        issued_at,
        nonce: nonce.map(str::to_owned),
    }
}

pub fn fixtures() -> PathBuf {
    attesta_test_support::fixtures()
}

struct FixedClock(AtomicU64);
impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_millis(self.0.load(Ordering::SeqCst))
    }
}

struct CounterEntropy(Mutex<u64>);
impl Entropy for CounterEntropy {
    fn fill(&self, dest: &mut [u8]) -> Result<(), AttestError> {
        let mut c = self.0.lock().unwrap();
        for chunk in dest.chunks_mut(32) {
            *c += 1;
            let d = sha256(&c.to_le_bytes());
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
        Ok(())
    }
}

/// A dev TEE whose clock reads `T0_SECS`, and a verifier trusting its root.
pub struct DevTee {
    pub _dir: tempfile::TempDir,
    pub attester: DevAttester,
    pub verifier: EvidenceVerifier,
    pub root: TrustedRoot,
}

pub fn dev_tee() -> DevTee {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("fake-attesta");
    std::fs::write(&exe, b"pretend attesta build").unwrap();
    let attester = DevAttester::open(DevOptions {
        data_dir: dir.path().join("data"),
        executable: exe,
        clock: Arc::new(FixedClock(AtomicU64::new(T0_SECS * 1000))),
        entropy: Arc::new(CounterEntropy(Mutex::new(7))),
    })
    .unwrap();
    let pem = std::fs::read_to_string(dir.path().join("data").join(dev::DEV_ROOT_FILE)).unwrap();
    let root = TrustedRoot::from_pem("dev root", &pem).unwrap();
    let policy = danger::accept_dev_root(Policy::aws_nitro().unwrap(), root.clone());
    DevTee {
        _dir: dir,
        attester,
        verifier: EvidenceVerifier::new(policy),
        root,
    }
}

/// Dev evidence binding `keys` (or, to forge, announcing `announce`) and `nonce`.
pub fn evidence(tee: &DevTee, keys: &NodeKeys, nonce: &[u8]) -> Vec<u8> {
    let b = keys.attestation_binding(nonce);
    tee.attester
        .attest(&AttestRequest {
            nonce: b.nonce,
            user_data: Some(b.user_data),
            public_key: Some(b.public_key),
            report_data: b.report_data,
        })
        .unwrap()
        .bytes
}

pub fn keyset_of(keys: &NodeKeys) -> PublicKeySet {
    *keys.public()
}

/// A replay memory with the default window (60 s back, 10 s ahead) and room for 1000 requests.
pub fn guard() -> ReplayGuard {
    ReplayGuard::new(ReplayConfig {
        capacity: 1000,
        ..ReplayConfig::default()
    })
}

/// The node path of a request that runs: open, then admit.
pub fn accept(node: &NodeKeys, body: &[u8], g: &ReplayGuard, now: UnixTime) -> AcceptedRequest {
    node.open_request(body, g, now)
        .unwrap()
        .admit(g, now)
        .unwrap()
}

/// The strict default policy (refuses declared faults).
pub fn strict() -> Policy {
    Policy::aws_nitro().unwrap()
}

/// 32 bytes counting up from `from`: the fixed secrets of the test vectors.
pub fn seq(from: u8) -> [u8; 32] {
    std::array::from_fn(|i| from.wrapping_add(i as u8))
}

/// A response key schedule written out a second time from the primitives
/// (HPKE export, HKDF-SHA256), to print the intermediate values of the
/// vectors: `(secret, key, nonce)` with these HKDF-Expand labels (single
/// answers: `"key"`, `"nonce"`; streams: `"stream key"`, `"stream nonce"`).
pub fn schedule(
    node: &NodeKeys,
    ikm_e: &[u8; 32],
    response_nonce: &[u8; 32],
    labels: (&[u8], &[u8]),
) -> ([u8; 32], [u8; 32], [u8; 12]) {
    use hpke::{Deserializable, Kem, Serializable};
    type K = hpke::kem::X25519HkdfSha256;
    let pk = <K as Kem>::PublicKey::from_bytes(&node.public().hpke_pk).unwrap();
    let info = [attesta_seal::REQUEST_INFO, &node.keyset_digest()[..]].concat();
    let (enc, ctx) =
        hpke::setup_sender_with_rng::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, K>(
            &hpke::OpModeS::Base,
            &pk,
            &info,
            &mut FixedRng(ikm_e.to_vec(), 0),
        )
        .unwrap();
    let mut secret = [0u8; 32];
    ctx.export(attesta_seal::RESPONSE_EXPORT, &mut secret)
        .unwrap();
    let salt = [&enc.to_bytes()[..], &response_nonce[..]].concat();
    let hk = hkdf::Hkdf::<sha2_11::Sha256>::new(Some(&salt), &secret);
    let (mut key, mut nonce) = ([0u8; 32], [0u8; 12]);
    hk.expand(labels.0, &mut key).unwrap();
    hk.expand(labels.1, &mut nonce).unwrap();
    (secret, key, nonce)
}

/// Compares freshly generated vectors with the committed file `path`
/// (`ATTESTA_REGEN_VECTORS=1` rewrites it first: review the diff!).
pub fn check_vector_file(path: &str, fresh: &serde_json::Value) {
    if std::env::var_os("ATTESTA_REGEN_VECTORS").is_some() {
        let mut text = serde_json::to_string_pretty(fresh).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path} is committed: {e}")),
    )
    .unwrap();
    assert_eq!(
        &committed, fresh,
        "regenerate with ATTESTA_REGEN_VECTORS=1 only for an intended format change"
    );
}

/// Runs an independent Python checker (`tests/vectors/NAME`) on a vector file.
pub fn run_python_checker(name: &str, vectors: &str) {
    let python = attesta_test_support::python();
    let script = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(vectors)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}

/// A committed vector file: its JSON, the node it fixes, and the requester's
/// context rebuilt from its request plaintext and ephemeral IKM (nonce
/// `0a0b0c0d`, model [`MODEL`]), to open the committed answers.
pub struct CommittedVectors {
    pub json: serde_json::Value,
    pub node: NodeKeys,
    pub ctx: attesta_seal::RequestContext,
}

impl CommittedVectors {
    pub fn load(path: &str) -> Self {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let h = |p: &str| hex::decode(json.pointer(p).unwrap().as_str().unwrap()).unwrap();
        let node = NodeKeys::from_secret_bytes(
            &h("/node/hpke_ikm").try_into().unwrap(),
            &h("/node/sign_seed").try_into().unwrap(),
        );
        let plaintext = json["request"]["plaintext"].as_str().unwrap();
        let (_, ctx) = attesta_seal::channel::seal_request_bytes(
            node.public(),
            plaintext.as_bytes().to_vec(),
            MODEL.into(),
            vec![10, 11, 12, 13],
            &mut FixedRng(h("/request/ikm_e"), 0),
        )
        .unwrap();
        CommittedVectors { json, node, ctx }
    }

    /// The hex value at JSON pointer `p`, decoded.
    pub fn hex(&self, p: &str) -> Vec<u8> {
        hex::decode(self.json.pointer(p).unwrap().as_str().unwrap()).unwrap()
    }
}
