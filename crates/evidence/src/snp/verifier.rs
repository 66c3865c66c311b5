//! The SEV-SNP verification pipeline. Every check runs and is reported; the
//! first failure in step order decides the outcome (as for Nitro).
//!
//! The product is taken from the report's CPUID (v3+) and from the
//! endorsement certificate, never from the caller; the two must agree, and
//! the chain must end in that product's pinned ARK.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::Platform;
use crate::error::VerifyError;
use crate::input::{Encoding, decode_input};
use crate::nitro::Expected;
use crate::nitro::cache::{self, ChainCache, Window};
use crate::policy::Policy;
use crate::report::{Report, SnpSummary, Status, StepId};
use crate::snp::certs::{self, SnpCert};
use crate::snp::error::SnpError;
use crate::snp::report::{AttestationReport, GuestPolicy, Product, REPORT_LEN, SigningKey, Tcb};
use crate::snp::roots::{ProductRoot, amd_roots};
use crate::time::UnixTime;

/// A report that passed every required check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReport {
    /// `SevSnp`, or `DevSnp` when the chain ended at the policy's dev ARK.
    pub platform: Platform,
    /// Name of the root the chain reached.
    pub root: String,
    /// The product (from CPUID and certificate).
    pub product: Product,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// The reported TCB, decoded for the product.
    pub tcb: Tcb,
    /// Name of the matching release, if the policy requires measurements.
    pub release: Option<String>,
    /// The decoded report.
    pub report: AttestationReport,
}

/// The result of [`SnpVerifier::verify`]: the full report and the outcome.
#[derive(Debug, Clone)]
pub struct SnpVerification {
    /// Every step, printable and serialisable.
    pub report: Report,
    /// The verified report, or the first failure in step order.
    pub outcome: Result<VerifiedReport, VerifyError>,
}

/// Verifies SEV-SNP attestation reports against a [`Policy`].
///
/// Keeps a bounded cache of verified certificate sets (keyed by their exact
/// bytes, valid only inside the certificates' windows), so a known VCEK
/// costs one P-384 verify instead of two RSA-4096 ones plus parsing.
pub struct SnpVerifier {
    policy: Policy,
    cache: ChainCache<SnpChain>,
}

impl std::fmt::Debug for SnpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpVerifier").finish_non_exhaustive()
    }
}

/// What a verified certificate set proved (for one product's anchor).
#[derive(Clone)]
struct SnpChain {
    leaf: Arc<SnpCert>,
    product: Product,
    anchor_name: String,
    platform: Platform,
    detail: String,
    certs: usize,
    not_before: UnixTime,
    not_after: UnixTime,
}

impl Window for SnpChain {
    fn window(&self) -> (UnixTime, UnixTime) {
        (self.not_before, self.not_after)
    }
}

struct Anchor<'a> {
    name: String,
    platform: Platform,
    ark: Arc<SnpCert>,
    builtin: &'a [Arc<SnpCert>],
}

fn snp(e: SnpError) -> VerifyError {
    VerifyError::Snp(e)
}

/// The report bytes of raw (1184 bytes), hex or base64 input.
pub fn decode_report(input: &[u8]) -> Result<(Encoding, Cow<'_, [u8]>), VerifyError> {
    if input.len() == REPORT_LEN {
        return Ok((Encoding::Binary, Cow::Borrowed(input)));
    }
    Ok(decode_input(input)?)
}

impl SnpVerifier {
    /// A verifier under `policy` (the AMD roots are built in and pinned).
    pub fn new(policy: Policy) -> Self {
        SnpVerifier {
            policy,
            cache: ChainCache::new(cache::DEFAULT_CAPACITY),
        }
    }

    /// Forgets every cached certificate set.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Verifies a report (raw 1184 bytes, hex or base64) with the supplied
    /// certificates (DER: the VCEK or VLEK, optionally the ASK/ASVK and
    /// ARK) at time `now`.
    pub fn verify(
        &self,
        input: &[u8],
        certs: &[Vec<u8>],
        expected: &Expected,
        now: UnixTime,
    ) -> SnpVerification {
        let mut report = Report::new(now);
        let result = self.run(&mut report, input, certs, expected, now);
        report.finish(result.as_ref().err());
        SnpVerification {
            report,
            outcome: result,
        }
    }

    fn run(
        &self,
        rep: &mut Report,
        input: &[u8],
        cert_ders: &[Vec<u8>],
        expected: &Expected,
        now: UnixTime,
    ) -> Result<VerifiedReport, VerifyError> {
        let fail = |rep: &mut Report, name, e: VerifyError| {
            rep.push(name, Status::Fail, e.to_string());
            Err(e)
        };
        let (encoding, bytes) = match decode_report(input) {
            Ok(x) => x,
            Err(e) => return fail(rep, StepId::Input, e),
        };
        rep.encoding = Some(encoding);
        rep.push(
            StepId::Input,
            Status::Pass,
            format!("{encoding}, {} bytes", bytes.len()),
        );
        let ar = match AttestationReport::parse(&bytes) {
            Ok(r) => r,
            Err(e) => return fail(rep, StepId::Report, snp(e)),
        };
        rep.snp = Some(SnpSummary::of(&ar));
        rep.push(
            StepId::Report,
            Status::Pass,
            format!(
                "SEV-SNP report v{}, {} bytes, ECDSA P-384/SHA-384",
                ar.version, REPORT_LEN
            ),
        );
        let signing_key = ar.signing_key().map_err(snp)?;

        let key = cache::key(&[], cert_ders);
        if let Some(hit) = self.cache.get(&key, now) {
            return self.run_cached(rep, ar, signing_key, hit, expected);
        }
        // Certificates: exactly one endorsement key (EC, not a CA).
        let mut parsed = Vec::with_capacity(cert_ders.len());
        for (i, der) in cert_ders.iter().enumerate() {
            match certs::parse(&format!("certs[{i}]"), der) {
                Ok(c) => parsed.push(Arc::new(c)),
                Err(e) => return fail(rep, StepId::Endorsement, e),
            }
        }
        let leaves: Vec<&Arc<SnpCert>> =
            parsed.iter().filter(|c| !c.is_ca && !c.is_rsa()).collect();
        let leaf = match leaves.as_slice() {
            [one] => Arc::clone(one),
            [] => return fail(rep, StepId::Endorsement, snp(SnpError::MissingEndorsement)),
            many => {
                return fail(
                    rep,
                    StepId::Endorsement,
                    snp(SnpError::AmbiguousEndorsement(many.len())),
                );
            }
        };

        let mut first: Option<VerifyError> = None;
        let mut keep = |e: Option<VerifyError>| {
            if first.is_none() {
                first = e;
            }
        };
        keep(rep.record(
            StepId::Endorsement,
            check_endorsement(&ar, signing_key, &leaf),
        ));

        let product = match product_of(&ar, &leaf) {
            Ok(p) => {
                rep.push(StepId::Product, Status::Pass, product_detail(&ar, p));
                p
            }
            Err(e) => {
                rep.push(StepId::Product, Status::Fail, e.to_string());
                // Without a product there is no ARK to check the chain against.
                return Err(first.unwrap_or(e));
            }
        };

        let roots = amd_roots().map_err(|e| VerifyError::BuiltInRoots {
            which: "AMD",
            source: Box::new(e),
        });
        let anchor = roots.and_then(|r| self.anchor(r, product, &parsed));
        let chain = anchor
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|a| check_chain(a, &parsed, &leaf, signing_key));
        let (anchor, inter) = match (anchor, chain) {
            (Ok(a), Ok(inter)) => {
                rep.push(
                    StepId::Chain,
                    Status::Pass,
                    format!(
                        "{signing_key} <- {} <- {} (SHA-256 {})",
                        inter.common_name,
                        a.name,
                        hex::encode(digest::digest(&digest::SHA256, &a.ark.der))
                    ),
                );
                (Some(a), Some(inter))
            }
            (a, Err(e)) => {
                keep(rep.record(StepId::Chain, Err(e)));
                (a.ok(), None)
            }
            (Err(e), _) => {
                keep(rep.record(StepId::Chain, Err(e)));
                (None, None)
            }
        };
        if let Some(a) = &anchor {
            rep.platform = Some(a.platform);
            rep.root = Some(a.name.clone());
        }

        let mut window = vec![&leaf];
        window.extend(inter.iter());
        if let Some(a) = &anchor {
            window.push(&a.ark);
        }
        let validity = window
            .iter()
            .try_for_each(|c| c.check_validity(now))
            .map(|()| {
                format!(
                    "{} certificate(s) valid at the verification time",
                    window.len()
                )
            });
        if let (Ok(_), Some(a), Some(chain_step)) = (&validity, &anchor, rep.step(StepId::Chain))
            && chain_step.status == Status::Pass
        {
            let facts = SnpChain {
                leaf: Arc::clone(&leaf),
                product,
                anchor_name: a.name.clone(),
                platform: a.platform,
                detail: chain_step.detail.clone(),
                certs: window.len(),
                not_before: window.iter().map(|c| c.not_before).max().unwrap_or(now),
                not_after: window.iter().map(|c| c.not_after).min().unwrap_or(now),
            };
            self.cache.insert(key, facts, now);
        }
        keep(rep.record(StepId::Validity, validity));

        keep(rep.record(StepId::Signature, check_signature(&ar, signing_key, &leaf)));
        let tcb = ar.reported_tcb.decode(product);
        keep(rep.record(StepId::Tcb, check_tcb(&ar, product, signing_key, &leaf)));
        keep(rep.record(StepId::GuestPolicy, self.check_guest_policy(ar.policy)));
        keep(rep.record(StepId::Vmpl, self.check_vmpl(ar.vmpl)));
        let release = self.check_measurements(rep, &ar, &mut keep);
        keep(check_report_data(rep, expected, &ar));

        match (first, anchor) {
            (Some(e), _) => Err(e),
            (None, Some(a)) => Ok(VerifiedReport {
                platform: a.platform,
                root: a.name,
                product,
                signing_key,
                tcb,
                release,
                report: ar,
            }),
            (None, None) => Err(VerifyError::UntrustedRoot {
                fingerprint: String::new(),
            }),
        }
    }

    /// The steps after the chain for a certificate set verified before.
    fn run_cached(
        &self,
        rep: &mut Report,
        ar: AttestationReport,
        signing_key: SigningKey,
        hit: SnpChain,
        expected: &Expected,
    ) -> Result<VerifiedReport, VerifyError> {
        let mut first: Option<VerifyError> = None;
        let mut keep = |e: Option<VerifyError>| {
            if first.is_none() {
                first = e;
            }
        };
        keep(rep.record(
            StepId::Endorsement,
            check_endorsement(&ar, signing_key, &hit.leaf),
        ));
        let product = match product_of(&ar, &hit.leaf) {
            Ok(p) if p == hit.product => {
                rep.push(StepId::Product, Status::Pass, product_detail(&ar, p));
                p
            }
            Ok(p) => {
                let e = snp(SnpError::ProductMismatch {
                    report: p,
                    certificate: hit.product,
                });
                rep.push(StepId::Product, Status::Fail, e.to_string());
                return Err(first.unwrap_or(e));
            }
            Err(e) => {
                rep.push(StepId::Product, Status::Fail, e.to_string());
                return Err(first.unwrap_or(e));
            }
        };
        rep.push(
            StepId::Chain,
            Status::Pass,
            format!("{} (cached)", hit.detail),
        );
        rep.platform = Some(hit.platform);
        rep.root = Some(hit.anchor_name.clone());
        rep.push(
            StepId::Validity,
            Status::Pass,
            format!("{} certificate(s) valid until {}", hit.certs, hit.not_after),
        );
        keep(rep.record(
            StepId::Signature,
            check_signature(&ar, signing_key, &hit.leaf),
        ));
        let tcb = ar.reported_tcb.decode(product);
        keep(rep.record(StepId::Tcb, check_tcb(&ar, product, signing_key, &hit.leaf)));
        keep(rep.record(StepId::GuestPolicy, self.check_guest_policy(ar.policy)));
        keep(rep.record(StepId::Vmpl, self.check_vmpl(ar.vmpl)));
        let release = self.check_measurements(rep, &ar, &mut keep);
        keep(check_report_data(rep, expected, &ar));
        match first {
            Some(e) => Err(e),
            None => Ok(VerifiedReport {
                platform: hit.platform,
                root: hit.anchor_name,
                product,
                signing_key,
                tcb,
                release,
                report: ar,
            }),
        }
    }

    /// The ARK the chain must end in: the product's pinned ARK, or the
    /// policy's dev ARK when the certificates end in exactly that. A
    /// self-issued certificate that is neither is refused (look-alike ARK).
    fn anchor<'a>(
        &'a self,
        roots: &'a [ProductRoot],
        product: Product,
        parsed: &[Arc<SnpCert>],
    ) -> Result<Anchor<'a>, VerifyError> {
        let amd = roots
            .iter()
            .find(|r| r.product == product)
            .ok_or_else(|| snp(SnpError::UnknownProduct(product.to_string())))?;
        let offered = parsed.iter().find(|c| c.is_ca && c.self_issued());
        if let (Some(dev), Some(top)) = (&self.policy.snp_dev_root, offered)
            && top.der == dev.ark.der
        {
            return Ok(Anchor {
                name: dev.name().to_owned(),
                platform: Platform::DevSnp,
                ark: Arc::clone(&dev.ark),
                builtin: &[],
            });
        }
        match offered {
            Some(top) if top.der != amd.ark.der => Err(snp(SnpError::UntrustedArk {
                product: product.to_string(),
                fingerprint: hex::encode(digest::digest(&digest::SHA256, &top.der)),
            })),
            _ => Ok(Anchor {
                name: amd.name.clone(),
                platform: Platform::SevSnp,
                ark: Arc::clone(&amd.ark),
                builtin: &amd.intermediates,
            }),
        }
    }

    fn check_guest_policy(&self, policy: GuestPolicy) -> Result<String, VerifyError> {
        if policy.0 & GuestPolicy::RESERVED_ONE == 0 {
            return Err(snp(SnpError::PolicyReserved(policy.0)));
        }
        let mut notes = Vec::new();
        if policy.debug() {
            if !self.policy.allow_debug {
                return Err(snp(SnpError::DebugPolicy(policy.0)));
            }
            notes.push("debug allowed by policy (INSECURE)");
        }
        if policy.migration_agent() {
            if !self.policy.snp_accept_migration_agent {
                return Err(snp(SnpError::MigrationAgent(policy.0)));
            }
            notes.push("migration agent accepted by policy");
        }
        if notes.is_empty() {
            notes.push("debug off, no migration agent");
        }
        Ok(format!(
            "{:#x}: {}{}",
            policy.0,
            notes.join(", "),
            if policy.smt() { ", SMT allowed" } else { "" }
        ))
    }

    fn check_vmpl(&self, vmpl: u32) -> Result<String, VerifyError> {
        match self.policy.snp_vmpl {
            None => Ok(format!("VMPL {vmpl} (no VMPL required by the policy)")),
            Some(required) if required == vmpl => Ok(format!("VMPL {vmpl}, as required")),
            Some(required) => Err(snp(SnpError::VmplMismatch {
                required,
                got: vmpl,
            })),
        }
    }

    fn check_measurements(
        &self,
        rep: &mut Report,
        ar: &AttestationReport,
        keep: &mut impl FnMut(Option<VerifyError>),
    ) -> Option<String> {
        let registry = &self.policy.measurements;
        if registry.is_empty() {
            rep.push(
                StepId::Measurements,
                Status::Skipped,
                "no measurements required by the policy",
            );
            return None;
        }
        match registry.check_snp(&ar.measurement, &ar.host_data) {
            Ok(release) => {
                rep.push(
                    StepId::Measurements,
                    Status::Pass,
                    format!("measurement (and host_data where pinned) match release `{release}`"),
                );
                Some(release)
            }
            Err(diff) => {
                keep(rep.record(
                    StepId::Measurements,
                    Err(VerifyError::MeasurementMismatch(diff)),
                ));
                None
            }
        }
    }
}

fn check_endorsement(
    ar: &AttestationReport,
    signing_key: SigningKey,
    leaf: &SnpCert,
) -> Result<String, VerifyError> {
    let kind = leaf.endorsement_kind();
    if kind != signing_key {
        return Err(snp(SnpError::EndorsementKindMismatch {
            report: signing_key,
            certificate: kind,
        }));
    }
    if kind == SigningKey::Vcek {
        let hw = leaf.ext.hw_id.as_deref().unwrap_or_default();
        if hw != ar.chip_id {
            return Err(snp(SnpError::ChipIdMismatch {
                vcek: hex::encode(hw),
                report: hex::encode(ar.chip_id),
            }));
        }
        return Ok(format!(
            "VCEK ({}) issued for this chip (hwID = chip_id)",
            leaf.common_name
        ));
    }
    Ok(format!(
        "VLEK ({}), report flags name the VLEK",
        leaf.common_name
    ))
}

fn product_of(ar: &AttestationReport, leaf: &SnpCert) -> Result<Product, VerifyError> {
    let name = leaf.ext.product_name.clone().unwrap_or_default();
    let cert = Product::from_name(&name)
        .ok_or_else(|| snp(SnpError::UnknownProduct(format!("productName `{name}`"))))?;
    match ar.cpuid_product() {
        None => Ok(cert),
        Some(Err(e)) => Err(snp(e)),
        Some(Ok(report)) if report == cert => Ok(cert),
        Some(Ok(report)) => Err(snp(SnpError::ProductMismatch {
            report,
            certificate: cert,
        })),
    }
}

fn product_detail(ar: &AttestationReport, p: Product) -> String {
    match ar.cpuid {
        Some((f, m, s)) => format!(
            "{p}: CPUID family {f:#04x} model {m:#04x} stepping {s} and the certificate agree"
        ),
        None => format!("{p}: from the certificate (v2 reports carry no CPUID)"),
    }
}

/// Finds the ASK/ASVK that issued the leaf (sent along or built in) and
/// checks ARK -> intermediate -> leaf. The intermediate must be the right
/// kind: ASK for a VCEK, ASVK for a VLEK.
fn check_chain(
    anchor: &Anchor<'_>,
    parsed: &[Arc<SnpCert>],
    leaf: &SnpCert,
    kind: SigningKey,
) -> Result<Arc<SnpCert>, VerifyError> {
    let inter = parsed
        .iter()
        .filter(|c| c.is_ca && !c.self_issued())
        .chain(anchor.builtin.iter())
        .find(|c| c.names_issuer_of(leaf))
        .ok_or_else(|| VerifyError::ChainBroken {
            which: leaf.which.clone(),
            reason: format!(
                "no ASK/ASVK for {} among the supplied or built-in certificates",
                anchor.name
            ),
        })?;
    let inter_is_vlek = inter.common_name.contains("VLEK") || inter.common_name.contains("ASVK");
    if inter_is_vlek != (kind == SigningKey::Vlek) {
        return Err(VerifyError::ChainBroken {
            which: leaf.which.clone(),
            reason: format!(
                "a {kind} must be issued by the {}, not by {}",
                if kind == SigningKey::Vlek {
                    "ASVK"
                } else {
                    "ASK"
                },
                inter.common_name
            ),
        });
    }
    anchor.ark.check_issued(inter)?;
    inter.check_issued(leaf)?;
    Ok(Arc::clone(inter))
}

fn check_signature(
    ar: &AttestationReport,
    kind: SigningKey,
    leaf: &SnpCert,
) -> Result<String, VerifyError> {
    let key = leaf
        .report_key
        .as_ref()
        .ok_or(snp(SnpError::BadSignature(kind)))?;
    key.verify_sig(&ar.signed, &ar.signature_fixed())
        .map(|()| format!("ECDSA P-384/SHA-384 signature by the {kind} verifies"))
        .map_err(|_| snp(SnpError::BadSignature(kind)))
}

fn check_tcb(
    ar: &AttestationReport,
    product: Product,
    kind: SigningKey,
    leaf: &SnpCert,
) -> Result<String, VerifyError> {
    if !ar.reported_tcb.reserved_zero(product) {
        return Err(snp(SnpError::TcbReserved(ar.reported_tcb.0)));
    }
    let report = ar.reported_tcb.decode(product);
    let certificate = leaf
        .ext
        .tcb(product)
        .ok_or_else(|| VerifyError::BadCertificate {
            which: leaf.which.clone(),
            reason: format!("the {kind} lacks a TCB SPL extension for {product}"),
        })?;
    if report != certificate {
        return Err(snp(SnpError::TcbMismatch {
            key: kind,
            report,
            certificate,
        }));
    }
    Ok(format!("reported TCB {report} = the {kind}'s TCB"))
}

fn check_report_data(
    rep: &mut Report,
    expected: &Expected,
    ar: &AttestationReport,
) -> Option<VerifyError> {
    let Some(want) = expected.report_data.as_deref() else {
        rep.push(
            StepId::ReportData,
            Status::Skipped,
            "not checked by the caller",
        );
        return None;
    };
    let r = if want == ar.report_data {
        Ok("equals the expected 64 bytes".to_owned())
    } else {
        Err(snp(SnpError::ReportDataMismatch {
            expected: hex::encode(want),
            got: hex::encode(ar.report_data),
        }))
    };
    rep.record(StepId::ReportData, r)
}
