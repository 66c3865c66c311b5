//! The dev TEE: documents in the exact Nitro format, signed by a local dev
//! root. No hardware backs them; verifiers accept them only when told the
//! dev root explicitly and always report them as `dev (insecure)`.
//!
//! Layout under the data dir: `dev-root.pem` (share this with verifiers) and
//! `dev-root.key` (mode 0600). Each start issues a fresh leaf (3 h, like
//! Nitro), re-issued before it expires. PCR0 is SHA-384 of the executable.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_evidence::nitro::cose;
use attesta_evidence::{
    AttestationDocument, Expected, NitroVerifier, Policy, Release, TrustedRoot, UnixTime, danger,
    pem,
};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

use crate::{AttestError, AttestRequest, Attester, Evidence, Platform, check_nitro_fields};

/// The dev root certificate, relative to the data dir.
pub const DEV_ROOT_FILE: &str = "dev-root.pem";
/// The dev root private key (PKCS#8 PEM, 0600), relative to the data dir.
pub const DEV_ROOT_KEY_FILE: &str = "dev-root.key";
/// Leaf lifetime, as NSM uses.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// A leaf is replaced this long before it expires.
pub const LEAF_RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
pub(crate) const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
pub(crate) const BACKDATE: Duration = Duration::from_secs(60);
const ROOT_CN: &str = "attesta dev root (insecure)";
const PCR_COUNT: u8 = 16;

/// Source of the current time (injected so tests are deterministic).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> UnixTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_system(std::time::SystemTime::now())
    }
}

/// Source of randomness for keys and serial numbers (injected for tests).
pub trait Entropy: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<(), AttestError>;
}

/// The operating system's CSPRNG (through aws-lc).
#[derive(Debug, Default)]
pub struct SystemEntropy(SystemRandom);

impl Entropy for SystemEntropy {
    fn fill(&self, dest: &mut [u8]) -> Result<(), AttestError> {
        self.0.fill(dest).map_err(|_| AttestError::Entropy)
    }
}

/// How to start the dev TEE.
#[derive(Clone)]
pub struct DevOptions {
    /// Where `dev-root.pem` / `dev-root.key` live.
    pub data_dir: PathBuf,
    /// The executable measured into PCR0.
    pub executable: PathBuf,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Randomness source.
    pub entropy: Arc<dyn Entropy>,
}

impl std::fmt::Debug for DevOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevOptions")
            .field("data_dir", &self.data_dir)
            .field("executable", &self.executable)
            .finish()
    }
}

impl DevOptions {
    /// The running executable, the system clock and the OS CSPRNG.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let executable =
            std::env::current_exe().map_err(AttestError::io("locate", "current executable"))?;
        Ok(DevOptions {
            data_dir: data_dir.into(),
            executable,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy::default()),
        })
    }
}

/// SHA-384 of a file, streamed.
pub fn measure_executable(path: &Path) -> Result<[u8; 48], AttestError> {
    let mut file = std::fs::File::open(path).map_err(AttestError::io("open", path))?;
    let mut ctx = digest::Context::new(&digest::SHA384);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(AttestError::io("read", path))?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    let mut out = [0u8; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The PCR in which the dev TEE reports the SHA-384 of the inference
/// library the node loaded at run time (onnxruntime): PCR0 measures the
/// binary only, and the library runs every request too. Nitro leaves PCR 9
/// unused.
pub const ENGINE_LIBRARY_PCR: u8 = 9;

/// The registry entry a dev node running `executable` matches (what `attesta measure` prints).
pub fn release_for_executable(executable: &Path, name: &str) -> Result<Release, AttestError> {
    release_for(executable, None, name)
}

/// The registry entry a dev node running `executable` with the inference
/// library `engine_library` (if any) matches: PCR0, and
/// [`ENGINE_LIBRARY_PCR`] when a library is named.
pub fn release_for(
    executable: &Path,
    engine_library: Option<&Path>,
    name: &str,
) -> Result<Release, AttestError> {
    let pcr0 = measure_executable(executable)?;
    let mut pcrs: std::collections::BTreeMap<u8, Vec<u8>> =
        [(0u8, pcr0.to_vec())].into_iter().collect();
    if let Some(lib) = engine_library {
        pcrs.insert(ENGINE_LIBRARY_PCR, measure_executable(lib)?.to_vec());
    }
    Ok(Release {
        name: name.to_owned(),
        pcrs,
    })
}

struct Leaf {
    der: Vec<u8>,
    key: EcdsaKeyPair,
    not_before: UnixTime,
    not_after: UnixTime,
}

/// The dev TEE attester.
pub struct DevAttester {
    root_der: Vec<u8>,
    root_issuer: rcgen::Certificate,
    root_key: KeyPair,
    leaf: Mutex<Arc<Leaf>>,
    pcr0: [u8; 48],
    /// SHA-384 of an inference library loaded at run time, reported in
    /// [`ENGINE_LIBRARY_PCR`] (all zeros when none is loaded).
    engine_library: Option<[u8; 48]>,
    module_id: String,
    insecure_fault: Option<String>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

pub(crate) fn dev_err(what: &str) -> impl FnOnce(rcgen::Error) -> AttestError + '_ {
    move |source| AttestError::DevCertificate {
        what: what.to_owned(),
        source,
    }
}

/// A P-384 key from 48 bytes of entropy (RFC 5915 without the public key;
/// aws-lc derives it). Retries in the ~2^-190 case of a scalar ≥ n.
pub(crate) fn p384_key(entropy: &dyn Entropy) -> Result<EcdsaKeyPair, AttestError> {
    ec_key::<48>(
        entropy,
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &[0x2b, 0x81, 0x04, 0x00, 0x22],
    )
}

/// A P-256 key from 32 bytes of entropy (the dev DCAP signer's keys).
pub(crate) fn p256_key(entropy: &dyn Entropy) -> Result<EcdsaKeyPair, AttestError> {
    ec_key::<32>(
        entropy,
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    )
}

/// An EC key of `N`-byte scalars on the curve named by `curve_oid` (DER content octets).
fn ec_key<const N: usize>(
    entropy: &dyn Entropy,
    alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
    curve_oid: &[u8],
) -> Result<EcdsaKeyPair, AttestError> {
    for _ in 0..4 {
        let mut d = [0u8; N];
        entropy.fill(&mut d)?;
        // ECPrivateKey ::= SEQUENCE { 1, OCTET STRING d, [0] curve OID }
        let params_len = curve_oid.len() + 2;
        let body_len = 3 + 2 + N + 2 + params_len;
        let mut der = vec![0x30, body_len as u8, 0x02, 0x01, 0x01, 0x04, N as u8];
        der.extend_from_slice(&d);
        der.extend_from_slice(&[0xa0, params_len as u8, 0x06, curve_oid.len() as u8]);
        der.extend_from_slice(curve_oid);
        if let Ok(k) = EcdsaKeyPair::from_private_key_der(alg, &der) {
            return Ok(k);
        }
    }
    Err(AttestError::Dev("could not derive an EC key".into()))
}

pub(crate) fn rcgen_key(key: &EcdsaKeyPair) -> Result<KeyPair, AttestError> {
    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| AttestError::Dev("cannot export key".into()))?;
    KeyPair::try_from(pkcs8.as_ref()).map_err(dev_err("key"))
}

pub(crate) fn serial(entropy: &dyn Entropy) -> Result<SerialNumber, AttestError> {
    let mut s = [0u8; 16];
    entropy.fill(&mut s)?;
    s[0] &= 0x7f;
    s[0] |= 0x01;
    Ok(SerialNumber::from_slice(&s))
}

pub(crate) fn offset(t: UnixTime) -> Result<time::OffsetDateTime, AttestError> {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
        .map_err(AttestError::DevTime)
}

/// The root's parameters; deterministic in everything rcgen uses as issuer
/// (name, key usages), so a reloaded root issues leaves that chain to the
/// persisted certificate.
fn root_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "attesta");
    dn.push(DnType::CommonName, ROOT_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), AttestError> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(AttestError::io("create", &tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(AttestError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(AttestError::io("rename", path))
}

/// Loads a self-signed root and its key from `dir` (creating both on first
/// start). Refuses a half-present root (one of the two files missing)
/// rather than replacing it.
pub(crate) fn load_or_create_root(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    params: CertificateParams,
    now: UnixTime,
    entropy: &dyn Entropy,
) -> Result<(Vec<u8>, KeyPair), AttestError> {
    load_or_create_root_with(dir, cert_file, key_file, params, now, entropy, p384_key)
}

/// As [`load_or_create_root`], with a new root's key made by `make_key`
/// (P-256 for the DCAP dev root, as Intel's).
pub(crate) fn load_or_create_root_with(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    mut params: CertificateParams,
    now: UnixTime,
    entropy: &dyn Entropy,
    make_key: fn(&dyn Entropy) -> Result<EcdsaKeyPair, AttestError>,
) -> Result<(Vec<u8>, KeyPair), AttestError> {
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let key_pem =
                std::fs::read_to_string(&key_path).map_err(AttestError::io("read", &key_path))?;
            let root_key = KeyPair::from_pem(&key_pem).map_err(dev_err(key_file))?;
            let cert_pem =
                std::fs::read_to_string(&cert_path).map_err(AttestError::io("read", &cert_path))?;
            let der = pem::certificates(&cert_pem)
                .map_err(|source| AttestError::DevRootFile {
                    file: cert_file.to_owned(),
                    source,
                })?
                .into_iter()
                .next()
                .ok_or_else(|| AttestError::Dev(format!("{cert_file} is empty")))?;
            Ok((der, root_key))
        }
        (false, false) => {
            std::fs::create_dir_all(dir).map_err(AttestError::io("create", dir))?;
            let root_key = rcgen_key(&make_key(entropy)?)?;
            params.not_before = offset(now.saturating_sub(BACKDATE))?;
            params.not_after = offset(now.saturating_add(ROOT_LIFETIME))?;
            params.serial_number = Some(serial(entropy)?);
            let cert = params.self_signed(&root_key).map_err(dev_err("root"))?;
            write_private(&key_path, root_key.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, cert.pem()).map_err(AttestError::io("write", &cert_path))?;
            Ok((cert.der().to_vec(), root_key))
        }
        _ => Err(AttestError::Dev(format!(
            "only one of {} and {} exists; refusing to replace the root",
            cert_path.display(),
            key_path.display()
        ))),
    }
}

impl DevAttester {
    /// Loads the dev root from the data dir (creating it on first start),
    /// measures the executable and issues a leaf. Refuses a half-present
    /// root (one of the two files missing) rather than replacing it.
    pub fn open(opts: DevOptions) -> Result<Self, AttestError> {
        let now = opts.clock.now();
        let (root_der, root_key) = load_or_create_root(
            &opts.data_dir,
            DEV_ROOT_FILE,
            DEV_ROOT_KEY_FILE,
            root_params(),
            now,
            opts.entropy.as_ref(),
        )?;
        let root_issuer = root_params()
            .self_signed(&root_key)
            .map_err(dev_err("root"))?;
        let mut id = [0u8; 8];
        opts.entropy.fill(&mut id)?;
        let module_id = format!("dev-{}", hex::encode(id));
        let pcr0 = measure_executable(&opts.executable)?;
        let mut me = DevAttester {
            root_der,
            root_issuer,
            root_key,
            leaf: Mutex::new(Arc::new(Leaf {
                der: Vec::new(),
                key: p384_key(opts.entropy.as_ref())?,
                not_before: now,
                not_after: now,
            })),
            pcr0,
            engine_library: None,
            module_id,
            insecure_fault: None,
            clock: opts.clock,
            entropy: opts.entropy,
        };
        let leaf = me.issue_leaf(now)?;
        me.leaf = Mutex::new(Arc::new(leaf));
        me.self_test(now)?;
        Ok(me)
    }

    /// Signs one document and verifies it against our own root, so a key
    /// file that does not belong to the certificate fails at start.
    fn self_test(&self, now: UnixTime) -> Result<(), AttestError> {
        let root = TrustedRoot::from_der("dev root", &self.root_der).map_err(|source| {
            AttestError::DevRoot {
                what: "dev root",
                source,
            }
        })?;
        let policy = Policy::aws_nitro().map_err(crate::error::aws_root)?;
        let verifier = NitroVerifier::with_cache_capacity(danger::accept_dev_root(policy, root), 0);
        let nonce = b"attesta dev self-test".to_vec();
        let ev = self.attest(&AttestRequest {
            nonce: nonce.clone(),
            user_data: None,
            public_key: None,
            report_data: [0; 64],
        })?;
        let v = verifier.verify(
            &ev.bytes,
            &Expected {
                nonce: Some(nonce),
                ..Default::default()
            },
            now,
        );
        v.outcome
            .map(|_| ())
            .map_err(|source| AttestError::DevSelfTest {
                what: "self-test failed (dev-root.key does not match dev-root.pem?)",
                source,
            })
    }

    fn issue_leaf(&self, now: UnixTime) -> Result<Leaf, AttestError> {
        let key = p384_key(self.entropy.as_ref())?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "attesta");
        dn.push(
            DnType::CommonName,
            format!("{}.dev.attesta", self.module_id),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_before = now.saturating_sub(BACKDATE);
        let not_after = now.saturating_add(LEAF_LIFETIME);
        p.not_before = offset(not_before)?;
        p.not_after = offset(not_after)?;
        p.serial_number = Some(serial(self.entropy.as_ref())?);
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&rcgen_key(&key)?, &self.root_issuer, &self.root_key)
            .map_err(dev_err("leaf"))?;
        // Whole seconds, as X.509 stores them.
        Ok(Leaf {
            der: cert.der().to_vec(),
            key,
            not_before: UnixTime::from_secs(not_before.as_secs()),
            not_after: UnixTime::from_secs(not_after.as_secs()),
        })
    }

    fn current_leaf(&self, now: UnixTime) -> Result<Arc<Leaf>, AttestError> {
        let mut slot = self
            .leaf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now < slot.not_before || now.saturating_add(LEAF_RENEW_BEFORE) > slot.not_after {
            *slot = Arc::new(self.issue_leaf(now)?);
        }
        Ok(Arc::clone(&slot))
    }

    /// The dev root certificate (DER): what verifiers must be given.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The dev root certificate as PEM (the contents of `dev-root.pem`).
    pub fn root_pem(&self) -> String {
        pem::encode_certificate(&self.root_der)
    }

    /// PCR0: SHA-384 of the executable.
    pub fn pcr0(&self) -> [u8; 48] {
        self.pcr0
    }

    /// Declares an active `--insecure-fault` in a signed field
    /// (`attesta_insecure_fault`) of every document signed from now on, so
    /// verifiers refuse this node unless they opted in. Only the dev TEE can
    /// declare a fault: hardware attesters have no such field to sign.
    pub fn declare_insecure_fault(&mut self, label: &str) -> Result<(), AttestError> {
        attesta_evidence::nitro::document::check_fault_label(label).map_err(|source| {
            AttestError::FaultLabel {
                label: label.to_owned(),
                source,
            }
        })?;
        self.insecure_fault = Some(label.to_owned());
        Ok(())
    }

    /// The fault this attester declares in every document, if any.
    pub fn insecure_fault(&self) -> Option<&str> {
        self.insecure_fault.as_deref()
    }

    /// This process's module id (`dev-…`).
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// Reports `sha384` (of the inference library this process loaded) in
    /// [`ENGINE_LIBRARY_PCR`] of every later document.
    pub fn measure_engine_library(&mut self, sha384: [u8; 48]) {
        self.engine_library = Some(sha384);
    }

    /// The registry entry this node matches.
    pub fn release(&self, name: &str) -> Release {
        let mut pcrs: std::collections::BTreeMap<u8, Vec<u8>> =
            [(0u8, self.pcr0.to_vec())].into_iter().collect();
        if let Some(lib) = self.engine_library {
            pcrs.insert(ENGINE_LIBRARY_PCR, lib.to_vec());
        }
        Release {
            name: name.to_owned(),
            pcrs,
        }
    }

    /// The document this attester would sign for `req` at `now`, unsigned.
    pub fn document(
        &self,
        req: &AttestRequest,
        now: UnixTime,
    ) -> Result<AttestationDocument, AttestError> {
        check_nitro_fields(req)?;
        let leaf = self.current_leaf(now)?;
        let pcrs = (0..PCR_COUNT)
            .map(|i| {
                (
                    i,
                    match (i, self.engine_library) {
                        (0, _) => self.pcr0.to_vec(),
                        (ENGINE_LIBRARY_PCR, Some(lib)) => lib.to_vec(),
                        _ => vec![0u8; 48],
                    },
                )
            })
            .collect();
        Ok(AttestationDocument {
            module_id: self.module_id.clone(),
            digest: "SHA384".into(),
            timestamp_ms: now.as_millis(),
            pcrs,
            certificate: leaf.der.clone(),
            cabundle: vec![self.root_der.clone()],
            public_key: req.public_key.clone(),
            user_data: req.user_data.clone(),
            nonce: (!req.nonce.is_empty()).then(|| req.nonce.clone()),
            insecure_fault: self.insecure_fault.clone(),
        })
    }

    /// Signs any document with the current leaf key: for tests and tools that
    /// need validly signed variants (the certificate fields are taken as given).
    pub fn sign_document(&self, doc: &AttestationDocument) -> Result<Vec<u8>, AttestError> {
        let leaf = self.current_leaf(self.clock.now())?;
        self.sign_with(&leaf, doc)
    }

    fn sign_with(&self, leaf: &Leaf, doc: &AttestationDocument) -> Result<Vec<u8>, AttestError> {
        let protected = cose::es384_protected_header();
        let payload = doc.encode();
        let msg = cose::sig_structure(&protected, &payload);
        let sig = leaf
            .key
            .sign(&SystemRandom::new(), &msg)
            .map_err(|_| AttestError::Dev("signing failed".into()))?;
        Ok(cose::encode_sign1(&protected, &payload, sig.as_ref()))
    }

    /// The current leaf's public key (uncompressed point).
    pub fn leaf_public_key(&self) -> Result<Vec<u8>, AttestError> {
        Ok(self
            .current_leaf(self.clock.now())?
            .key
            .public_key()
            .as_ref()
            .to_vec())
    }
}

impl Attester for DevAttester {
    fn platform(&self) -> Platform {
        Platform::Dev
    }

    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        let now = self.clock.now();
        let doc = self.document(req, now)?;
        let leaf = self.current_leaf(now)?;
        Ok(Evidence {
            platform: Platform::Dev,
            bytes: self.sign_with(&leaf, &doc)?,
            aux: None,
        })
    }
}

#[cfg(test)]
mod engine_library_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn engine_library_is_reported_in_pcr9_and_pinned_by_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("fake-attesta");
        let lib = dir.path().join("libengine.so");
        std::fs::write(&exe, b"binary").unwrap();
        std::fs::write(&lib, b"engine library").unwrap();
        let mut opts = DevOptions::new(dir.path().join("data")).unwrap();
        opts.executable = exe.clone();
        let mut dev = DevAttester::open(opts).unwrap();
        let req = AttestRequest {
            nonce: vec![1; 20],
            user_data: None,
            public_key: None,
            report_data: [0; 64],
        };
        let now = SystemClock.now();
        let pcr9 = |dev: &DevAttester| {
            dev.document(&req, now)
                .unwrap()
                .pcrs
                .get(&ENGINE_LIBRARY_PCR)
                .cloned()
                .unwrap()
        };
        assert_eq!(pcr9(&dev), vec![0u8; 48], "no library: zeros");
        assert!(!dev.release("r").pcrs.contains_key(&ENGINE_LIBRARY_PCR));

        let measured = measure_executable(&lib).unwrap();
        dev.measure_engine_library(measured);
        assert_eq!(pcr9(&dev), measured.to_vec());
        let pinned = release_for(&exe, Some(&lib), "r").unwrap();
        assert_eq!(pinned.pcrs, dev.release("r").pcrs);
        // A registry entry for another library names another PCR9.
        std::fs::write(&lib, b"another engine library").unwrap();
        let other = release_for(&exe, Some(&lib), "r").unwrap();
        assert_ne!(
            other.pcrs.get(&ENGINE_LIBRARY_PCR),
            Some(&measured.to_vec())
        );
        assert_eq!(other.pcrs.get(&0), pinned.pcrs.get(&0));
    }
}
