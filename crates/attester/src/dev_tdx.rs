//! The dev TDX TEE: TDX quotes in the exact DCAP format (v4, TDX 1.0 body)
//! with their collateral, signed by [`DcapDevSigner`] under a locally
//! generated root, so nodes without TDX hardware exercise the whole DCAP
//! verification path. No hardware backs them: verifiers accept them only
//! through `danger::accept_dcap_dev_root` and always report
//! `dev-tdx (insecure)`.
//!
//! Layout under the data dir: `dev-dcap-root.pem` (share this with
//! verifiers: `--dcap-dev-root`) and `dev-dcap-root.key` (0600), made on
//! first start; each start issues a fresh PCK chain, TCB signing
//! certificate and attestation key under that root. The collateral (TCB info, QE identity,
//! CRLs) travels beside every quote as the envelope's `collateral`, so
//! verifiers need no network. MRTD is SHA-384 of the executable; RTMR0-3,
//! MRCONFIGID and MROWNER are zero.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use attesta_evidence::dcap::{
    Collateral, CollateralJson, DcapExpected, DcapRelease, DcapRoot, DcapVerifier, TeeType,
};
use attesta_evidence::{Policy, UnixTime, danger};

use crate::dcap_dev::{COLLATERAL_LIFETIME, CollateralSpec, DcapDevSigner, TdxBody};
use crate::dev::{Clock, DevOptions, measure_executable};
use crate::{AttestError, AttestRequest, Attester, Evidence, Platform};

/// The dev DCAP root certificate, relative to the data dir.
pub const DEV_DCAP_ROOT_FILE: &str = "dev-dcap-root.pem";
/// The dev DCAP root's private key (PKCS#8 PEM, 0600), relative to the data dir.
pub const DEV_DCAP_ROOT_KEY_FILE: &str = "dev-dcap-root.key";
/// The quote version the dev TDX TEE produces.
pub const DEV_TDX_QUOTE_VERSION: u16 = 4;

/// The measurements a dev TD reports for an executable's SHA-384.
pub fn td_body(mr_td: [u8; 48], report_data: &[u8]) -> TdxBody {
    TdxBody {
        mr_td,
        report_data: report_data.to_vec(),
        ..TdxBody::default()
    }
}

/// The registry entry (`platform = "dev-tdx"`) of a dev TD running `executable`.
pub fn release_for(executable: &Path, name: &str) -> Result<DcapRelease, AttestError> {
    Ok(release(name, measure_executable(executable)?))
}

fn release(name: &str, mr_td: [u8; 48]) -> DcapRelease {
    let body = td_body(mr_td, &[]);
    let mut values = std::collections::BTreeMap::new();
    values.insert("mrtd".to_owned(), body.mr_td.to_vec());
    for (i, r) in body.rtmr.iter().enumerate() {
        values.insert(format!("rtmr{i}"), r.to_vec());
    }
    DcapRelease {
        name: name.to_owned(),
        tee: TeeType::Tdx,
        values,
        isv_prod_id: None,
        min_isv_svn: None,
    }
}

/// A DCAP release as a TOML `[[releases]]` entry for `platform` (`tdx`, `dev-tdx`, ...).
pub fn release_toml(release: &DcapRelease, platform: &str) -> String {
    let mut s = format!(
        "[[releases]]\nname = {:?}\nplatform = {platform:?}\n[releases.measurements]\n",
        release.name
    );
    for (k, v) in &release.values {
        s.push_str(&format!("{k} = \"{}\"\n", hex::encode(v)));
    }
    s
}

/// Collateral issued at one time (reissued once half its lifetime has passed).
struct Issued {
    at: UnixTime,
    json: serde_json::Value,
}

/// Produces dev TDX quotes with collateral. Never secure.
pub struct DevTdxAttester {
    signer: DcapDevSigner,
    measurement: [u8; 48],
    clock: Arc<dyn Clock>,
    collateral: Mutex<Issued>,
}

impl std::fmt::Debug for DevTdxAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevTdxAttester")
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

fn collateral_json(
    signer: &DcapDevSigner,
    now: UnixTime,
) -> Result<(CollateralJson, serde_json::Value), AttestError> {
    let c = signer.collateral(TeeType::Tdx, now, &CollateralSpec::default())?;
    let v = serde_json::to_value(&c).map_err(AttestError::DevCollateralJson)?;
    Ok((c, v))
}

impl DevTdxAttester {
    /// Loads the dev DCAP root from the data dir (creating it on first
    /// start), issues a fresh PKI under it, measures the executable and
    /// checks one of its own quotes.
    pub fn open(opts: DevOptions) -> Result<Self, AttestError> {
        let now = opts.clock.now();
        let signer = DcapDevSigner::under_root_in(
            &opts.data_dir,
            DEV_DCAP_ROOT_FILE,
            DEV_DCAP_ROOT_KEY_FILE,
            opts.entropy.as_ref(),
            now,
        )?;
        let (_, json) = collateral_json(&signer, now)?;
        let me = DevTdxAttester {
            signer,
            measurement: measure_executable(&opts.executable)?,
            clock: opts.clock,
            collateral: Mutex::new(Issued { at: now, json }),
        };
        me.self_test()?;
        Ok(me)
    }

    /// The dev root as PEM (what verifiers pass to `--dcap-dev-root`).
    pub fn root_pem(&self) -> String {
        self.signer.root_pem()
    }

    /// The dev root as a root a policy can accept (danger API).
    pub fn dev_root(&self) -> Result<DcapRoot, AttestError> {
        DcapRoot::from_der("dev (insecure)", self.signer.root_der()).map_err(|source| {
            AttestError::DevRoot {
                what: "dev DCAP root",
                source,
            }
        })
    }

    /// MRTD (SHA-384 of the executable).
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The registry entry this node matches.
    pub fn release(&self, name: &str) -> DcapRelease {
        release(name, self.measurement)
    }

    /// The collateral served beside the quotes (dcap-qvl's `QuoteCollateralV3` JSON),
    /// reissued once half of [`COLLATERAL_LIFETIME`] has passed.
    pub fn collateral(&self) -> Result<serde_json::Value, AttestError> {
        let now = self.clock.now();
        let mut issued = self
            .collateral
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now.as_secs() >= issued.at.as_secs() + COLLATERAL_LIFETIME.as_secs() / 2 {
            let (_, json) = collateral_json(&self.signer, now)?;
            *issued = Issued { at: now, json };
        }
        Ok(issued.json.clone())
    }

    /// A quote over `report_data` with this TD's measurements.
    pub fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, AttestError> {
        self.signer.tdx_quote(
            &td_body(self.measurement, report_data),
            DEV_TDX_QUOTE_VERSION,
        )
    }

    /// Verifies one of our own quotes against our own root, so a broken key
    /// or certificate fails at start rather than at every verifier.
    pub fn self_test(&self) -> Result<(), AttestError> {
        let policy = Policy::aws_nitro().map_err(crate::error::aws_root)?;
        let v = DcapVerifier::new(danger::accept_dcap_dev_root(policy, self.dev_root()?));
        let now = self.clock.now();
        let (json, _) = collateral_json(&self.signer, now)?;
        let collateral = Collateral::from_parts(json).map_err(AttestError::DevCollateral)?;
        let quote = self.quote(&[0x5a; 64])?;
        v.verify(&quote, &collateral, &DcapExpected::default(), now)
            .outcome
            .map(|_| ())
            .map_err(|source| AttestError::DevSelfTest {
                what: "dev-tdx self-test",
                source,
            })
    }
}

impl Attester for DevTdxAttester {
    fn platform(&self) -> Platform {
        Platform::DevTdx
    }

    /// The quote, with the collateral JSON as `aux` (the node serves it as
    /// the envelope's `collateral`).
    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        let collateral =
            serde_json::to_vec(&self.collateral()?).map_err(AttestError::DevCollateralJson)?;
        Ok(Evidence {
            platform: Platform::DevTdx,
            bytes: self.quote(&req.report_data)?,
            aux: Some(collateral),
        })
    }
}
