//! The Nitro verification pipeline: every check runs and is reported; the
//! first failure in step order decides the outcome. The chain comes before
//! the signature so that a tampered chain is named as such rather than as a
//! bad signature.

use std::sync::Arc;

use aws_lc_rs::digest;

use crate::Platform;
use crate::error::VerifyError;
use crate::input::decode_input;
use crate::nitro::cache::{self, ChainCache, ChainFacts};
use crate::nitro::certs::{self, ParsedCert};
use crate::nitro::cose;
use crate::nitro::document::AttestationDocument;
use crate::policy::Policy;
use crate::registry::MeasurementMatch;
use crate::report::{DocumentSummary, Report, Status, StepId};
use crate::roots::TrustedRoot;
use crate::time::UnixTime;

/// What the caller expects the document to be bound to. `None` skips a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The challenge nonce sent to the node.
    pub nonce: Option<Vec<u8>>,
    /// Expected `user_data` (e.g. nitriding's TLS/app key hashes).
    pub user_data: Option<Vec<u8>>,
    /// Expected `public_key` (e.g. the node's key set).
    pub public_key: Option<Vec<u8>>,
    /// Expected 64-byte `report_data` (SEV-SNP, TDX, SGX evidence).
    pub report_data: Option<Vec<u8>>,
}

/// A document that passed every required check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// `Nitro`, or `Dev` when the chain ended at the policy's dev root.
    pub platform: Platform,
    /// Name of the trusted root the chain reached.
    pub root: String,
    /// Name of the matching release, if the policy requires measurements.
    pub release: Option<String>,
    /// The decoded fields.
    pub document: AttestationDocument,
}

/// The result of [`NitroVerifier::verify`]: the full report and the outcome.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Every step, printable and serialisable.
    pub report: Report,
    /// The verified document, or the first failure in step order.
    pub outcome: Result<VerifiedDocument, VerifyError>,
}

/// Verifies Nitro (and dev) attestation documents against a [`Policy`].
///
/// Holds a bounded cache of verified certificate chains, so it should be
/// kept and shared (it is `Send + Sync`) rather than rebuilt per document.
pub struct NitroVerifier {
    policy: Policy,
    cache: ChainCache,
}

struct ChainCheck {
    leaf_key: Option<aws_lc_rs::signature::ParsedPublicKey>,
    chain: Result<String, VerifyError>,
    validity: Option<Result<String, VerifyError>>,
    root: Option<(Platform, String)>,
}

impl NitroVerifier {
    /// A verifier with the default cache size.
    pub fn new(policy: Policy) -> Self {
        Self::with_cache_capacity(policy, cache::DEFAULT_CAPACITY)
    }

    /// A verifier caching at most `capacity` chains (0 disables the cache).
    pub fn with_cache_capacity(policy: Policy, capacity: usize) -> Self {
        NitroVerifier {
            policy,
            cache: ChainCache::new(capacity),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Forgets every cached chain.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Number of cached chains.
    pub fn cached_chains(&self) -> usize {
        self.cache.len()
    }

    /// Verifies a document given as raw CBOR, base64 or hex, at time `now`.
    pub fn verify(&self, input: &[u8], expected: &Expected, now: UnixTime) -> Verification {
        let mut report = Report::new(now);
        let result = self.run(&mut report, input, expected, now);
        report.finish(result.as_ref().err());
        Verification {
            report,
            outcome: result,
        }
    }

    fn run(
        &self,
        report: &mut Report,
        input: &[u8],
        expected: &Expected,
        now: UnixTime,
    ) -> Result<VerifiedDocument, VerifyError> {
        let fail = |report: &mut Report, name, e: VerifyError| {
            report.push(name, Status::Fail, e.to_string());
            Err(e)
        };
        let (encoding, bytes) = match decode_input(input) {
            Ok(x) => x,
            Err(e) => return fail(report, StepId::Input, e.into()),
        };
        report.encoding = Some(encoding);
        report.push(
            StepId::Input,
            Status::Pass,
            format!("{encoding}, {} bytes of CBOR", bytes.len()),
        );
        let cose = match cose::parse(&bytes) {
            Ok(c) => c,
            Err(e) => return fail(report, StepId::Cose, e),
        };
        report.push(StepId::Cose, Status::Pass, "COSE_Sign1, alg ES384");
        let doc = match AttestationDocument::parse(&cose.payload) {
            Ok(d) => d,
            Err(e) => return fail(report, StepId::Payload, e),
        };
        report.document = Some(DocumentSummary::of(&doc));
        report.push(
            StepId::Payload,
            Status::Pass,
            format!(
                "{} PCRs, {} CA certificates, fields and sizes valid",
                doc.pcrs.len(),
                doc.cabundle.len()
            ),
        );

        let mut first: Option<VerifyError> = None;
        let mut keep = |e: Option<VerifyError>| {
            if first.is_none() {
                first = e;
            }
        };
        let mut chain = self.check_chain(&doc, now);
        // Checked outside the (cached) chain facts: the module id is per document.
        if matches!(chain.root, Some((Platform::Dev, _)))
            && !doc.module_id.starts_with("dev-")
            && chain.chain.is_ok()
        {
            chain.chain = Err(VerifyError::DevModuleId(doc.module_id.clone()));
        }
        let signature = match &chain.leaf_key {
            Some(key) => {
                let msg = cose::sig_structure(&cose.protected, &cose.payload);
                key.verify_sig(&msg, &cose.signature)
                    .map(|()| "ES384 signature by the leaf certificate verifies".to_owned())
                    .map_err(|_| VerifyError::BadSignature)
            }
            None => Err(VerifyError::BadCertificate {
                which: "leaf".into(),
                reason: "no usable public key".into(),
            }),
        };
        keep(report.record(StepId::Chain, chain.chain));
        match chain.validity {
            Some(v) => keep(report.record(StepId::Validity, v)),
            None => report.push(
                StepId::Validity,
                Status::Skipped,
                "certificates did not parse",
            ),
        }
        if chain.leaf_key.is_some() {
            keep(report.record(StepId::Signature, signature));
        } else {
            report.push(
                StepId::Signature,
                Status::Skipped,
                "leaf certificate unusable",
            );
        }
        if let Some((platform, root)) = &chain.root {
            report.platform = Some(*platform);
            report.root = Some(root.clone());
        }
        keep(report.record(StepId::Freshness, self.check_freshness(&doc, now)));
        keep(report.record(StepId::Debug, self.check_debug(&doc)));
        let platform = chain.root.as_ref().map(|(p, _)| *p);
        keep(report.record(
            StepId::DeclaredFault,
            self.check_declared_fault(&doc, platform),
        ));
        keep(check_bytes(
            report,
            StepId::Nonce,
            expected.nonce.as_deref(),
            doc.nonce.as_deref(),
        ));
        let release = self.check_measurements(report, &doc, &mut keep);
        keep(check_bytes(
            report,
            StepId::UserData,
            expected.user_data.as_deref(),
            doc.user_data.as_deref(),
        ));
        keep(check_bytes(
            report,
            StepId::PublicKey,
            expected.public_key.as_deref(),
            doc.public_key.as_deref(),
        ));

        match (first, chain.root) {
            (Some(e), _) => Err(e),
            (None, Some((platform, root))) => Ok(VerifiedDocument {
                platform,
                root,
                release,
                document: doc,
            }),
            // Unreachable in practice: a passing chain always names its root.
            (None, None) => Err(VerifyError::UntrustedRoot {
                fingerprint: String::new(),
            }),
        }
    }

    fn trusted(&self, der: &[u8]) -> Option<(&TrustedRoot, Platform)> {
        self.policy
            .roots
            .iter()
            .map(|r| (r, Platform::Nitro))
            .chain(self.policy.dev_root.iter().map(|r| (r, Platform::Dev)))
            .find(|(r, _)| r.der() == der)
    }

    fn check_chain(&self, doc: &AttestationDocument, now: UnixTime) -> ChainCheck {
        let key = cache::key(&doc.certificate, &doc.cabundle);
        if let Some(f) = self.cache.get(&key, now) {
            return ChainCheck {
                leaf_key: Some(f.leaf_key),
                chain: Ok(format!("{} (cached)", f.detail)),
                validity: Some(Ok(format!("all certificates valid until {}", f.not_after))),
                root: Some((f.platform, f.root)),
            };
        }
        let leaf = match certs::parse("leaf", &doc.certificate) {
            Ok(l) => l,
            Err(e) => {
                return ChainCheck {
                    leaf_key: None,
                    chain: Err(e),
                    validity: None,
                    root: None,
                };
            }
        };
        let leaf_key = leaf.cose_key().ok();
        let mut chain: Vec<Arc<ParsedCert>> = vec![Arc::new(leaf)];
        let mut root: Option<(&TrustedRoot, Platform)> = None;
        let mut parse_err = None;
        // Walk up from the leaf's issuer; the bundle lists the root first.
        for (i, der) in doc.cabundle.iter().enumerate().rev() {
            if let Some(r) = self.trusted(der) {
                chain.push(Arc::clone(&r.0.cert));
                root = Some(r);
                break;
            }
            match certs::parse(&format!("cabundle[{i}]"), der) {
                Ok(c) => chain.push(Arc::new(c)),
                Err(e) => {
                    parse_err = Some(e);
                    break;
                }
            }
        }
        let validity = chain
            .iter()
            .try_for_each(|c| c.check_validity(now))
            .map(|()| "every certificate is valid at the verification time".to_owned());
        if let Some(e) = parse_err {
            return ChainCheck {
                leaf_key,
                chain: Err(e),
                validity: Some(validity),
                root: None,
            };
        }
        if root.is_none() {
            // The bundle may omit the root: accept a top certificate issued by a trusted root.
            let top = chain.last().map(Arc::clone);
            let cas = chain.len().saturating_sub(1);
            root = top.and_then(|top| {
                self.policy
                    .roots
                    .iter()
                    .map(|r| (r, Platform::Nitro))
                    .chain(self.policy.dev_root.iter().map(|r| (r, Platform::Dev)))
                    .find(|(r, _)| r.cert.check_issued(&top, cas).is_ok())
            });
            match root {
                Some((r, _)) => chain.push(Arc::clone(&r.cert)),
                None => {
                    let top = doc.cabundle.first().unwrap_or(&doc.certificate);
                    let fingerprint = hex::encode(digest::digest(&digest::SHA256, top));
                    return ChainCheck {
                        leaf_key,
                        chain: Err(VerifyError::UntrustedRoot { fingerprint }),
                        validity: Some(validity),
                        root: None,
                    };
                }
            }
        }
        let links = chain.windows(2).enumerate().try_for_each(|(k, w)| match w {
            [child, parent] => parent.check_issued(child, k),
            _ => Ok(()),
        });
        let Some((root, platform)) = root else {
            return ChainCheck {
                leaf_key,
                chain: Err(VerifyError::UntrustedRoot {
                    fingerprint: String::new(),
                }),
                validity: Some(validity),
                root: None,
            };
        };
        let chain_result = links.map(|()| {
            format!(
                "leaf -> {} intermediate(s) -> {} (SHA-256 {})",
                chain.len().saturating_sub(2),
                root.name(),
                root.fingerprint_hex()
            )
        });
        if let (Ok(detail), Ok(_), Some(leaf_key)) = (&chain_result, &validity, &leaf_key) {
            let facts = ChainFacts {
                not_before: chain.iter().map(|c| c.not_before).max().unwrap_or(now),
                not_after: chain.iter().map(|c| c.not_after).min().unwrap_or(now),
                leaf_key: leaf_key.clone(),
                platform,
                root: root.name().to_owned(),
                detail: detail.clone(),
            };
            self.cache.insert(key, facts, now);
        }
        ChainCheck {
            leaf_key,
            chain: chain_result,
            validity: Some(validity),
            root: Some((platform, root.name().to_owned())),
        }
    }

    fn check_freshness(
        &self,
        doc: &AttestationDocument,
        now: UnixTime,
    ) -> Result<String, VerifyError> {
        let ts = doc.timestamp_ms;
        let skew = u64::try_from(self.policy.max_skew.as_millis()).unwrap_or(u64::MAX);
        if ts > now.as_millis().saturating_add(skew) {
            return Err(VerifyError::FromTheFuture {
                ahead_ms: ts - now.as_millis(),
            });
        }
        let age_ms = now.as_millis().saturating_sub(ts);
        let max_ms = u64::try_from(self.policy.max_age.as_millis()).unwrap_or(u64::MAX);
        if age_ms > max_ms {
            return Err(VerifyError::TooOld {
                age_secs: age_ms / 1000,
                max_age_secs: max_ms / 1000,
            });
        }
        Ok(format!("{} ms old (max {} s)", age_ms, max_ms / 1000))
    }

    fn check_debug(&self, doc: &AttestationDocument) -> Result<String, VerifyError> {
        match (doc.is_debug(), self.policy.allow_debug) {
            (false, _) => Ok("production mode (PCR0-2 set)".into()),
            (true, true) => Ok("debug mode, allowed by policy (INSECURE)".into()),
            (true, false) => Err(VerifyError::DebugMode),
        }
    }

    /// A declared fault is only meaningful from the dev TEE: a production
    /// root never signs one, so there it is a malformed document. From the
    /// dev root it fails unless the policy opted in, and is reported either way.
    fn check_declared_fault(
        &self,
        doc: &AttestationDocument,
        platform: Option<Platform>,
    ) -> Result<String, VerifyError> {
        let Some(fault) = &doc.insecure_fault else {
            return Ok("none declared".into());
        };
        match platform {
            Some(Platform::Dev) | None if self.policy.accept_declared_faults => {
                Ok(format!("{fault} (declared; INSECURE, accepted by policy)"))
            }
            Some(Platform::Dev) | None => Err(VerifyError::FaultDeclared(fault.clone())),
            Some(_) => Err(VerifyError::MalformedPayload(format!(
                "field `{}` under a production root",
                crate::nitro::document::INSECURE_FAULT_KEY
            ))),
        }
    }

    fn check_measurements(
        &self,
        report: &mut Report,
        doc: &AttestationDocument,
        keep: &mut impl FnMut(Option<VerifyError>),
    ) -> Option<String> {
        if self.policy.measurements.is_empty() {
            report.push(
                StepId::Measurements,
                Status::Skipped,
                "no measurements required by the policy",
            );
            return None;
        }
        match self.policy.measurements.check(&doc.pcrs) {
            MeasurementMatch::Matched { release } => {
                report.push(
                    StepId::Measurements,
                    Status::Pass,
                    format!("matches release `{release}`"),
                );
                Some(release)
            }
            m @ MeasurementMatch::Mismatch { .. } => {
                keep(report.record(
                    StepId::Measurements,
                    Err(VerifyError::MeasurementMismatch(m.to_string())),
                ));
                None
            }
        }
    }
}

fn check_bytes(
    report: &mut Report,
    name: StepId,
    expected: Option<&[u8]>,
    got: Option<&[u8]>,
) -> Option<VerifyError> {
    let Some(want) = expected else {
        let size = got.map_or_else(|| "absent".to_owned(), |g| format!("{} bytes", g.len()));
        report.push(
            name,
            Status::Skipped,
            format!("not checked (document: {size})"),
        );
        return None;
    };
    let hex_or_none = |g: Option<&[u8]>| g.map_or_else(|| "none".to_owned(), hex::encode);
    let result = match (name, got) {
        (_, Some(g)) if g == want => Ok(format!("equals the expected {} bytes", want.len())),
        (StepId::Nonce, None) => Err(VerifyError::NonceMissing),
        (StepId::Nonce, g) => Err(VerifyError::NonceMismatch {
            expected: hex::encode(want),
            got: hex_or_none(g),
        }),
        (StepId::UserData, g) => Err(VerifyError::UserDataMismatch {
            expected: hex::encode(want),
            got: hex_or_none(g),
        }),
        (_, g) => Err(VerifyError::PublicKeyMismatch {
            expected: hex::encode(want),
            got: hex_or_none(g),
        }),
    };
    report.record(name, result)
}
