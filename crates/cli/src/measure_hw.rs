//! `attesta measure --tee nitro|tsm|gramine|auto`: the registry entry of the
//! hardware TEE this process runs in, read from a fresh piece of its own
//! evidence. Hardware measurements (a Nitro image's PCRs, a TD's MRTD and
//! RTMRs, an SNP launch digest, an enclave's MRENCLAVE) are computed by the
//! platform at launch, so the honest way to learn them from inside is to ask
//! the platform; publishing the printed entry then pins exactly what runs.

use anyhow::Context;
use attesta_attester::{AttestRequest, Evidence, Platform, SelectOptions, TeeKind};
use attesta_evidence::dcap::{DcapRelease, Quote, measurements_of};
use attesta_evidence::snp::AttestationReport;
use attesta_evidence::{Release, SnpRelease};

/// TDX fields pinned only when the TD sets them (zero means "not used" in a TD report).
const TDX_OPTIONAL: [&str; 3] = ["mrconfigid", "mrowner", "mrownerconfig"];

/// Attests once through `kind` and prints the entry of what answered.
pub fn run(kind: TeeKind, name: &str) -> anyhow::Result<()> {
    let attester = attesta_attester::select(kind, SelectOptions::default())
        .context("opening the TEE to measure (run this inside the enclave / confidential VM)")?;
    let mut report_data = [0u8; 64];
    getrandom::fill(&mut report_data).context("drawing a nonce")?;
    let req = AttestRequest {
        nonce: report_data[..32].to_vec(),
        user_data: None,
        public_key: None,
        report_data,
    };
    let evidence = attester.attest(&req).context("producing evidence")?;
    print!("{}", release_toml(&evidence, name)?);
    Ok(())
}

/// The `[[releases]]` entry pinning the measurements in `evidence`.
pub fn release_toml(evidence: &Evidence, name: &str) -> anyhow::Result<String> {
    match evidence.platform {
        Platform::Nitro => {
            let cose = attesta_evidence::nitro::cose::parse(&evidence.bytes)
                .context("the NSM document is not COSE_Sign1")?;
            let doc = attesta_evidence::AttestationDocument::parse(&cose.payload)
                .context("the NSM document does not parse")?;
            // PCR0-2 identify the image (EIF, kernel, application); PCR8 the signing
            // certificate when the EIF is signed. Others depend on the instance.
            let pcrs = doc
                .pcrs
                .into_iter()
                .filter(|(i, v)| matches!(i, 0..=2) || (*i == 8 && v.iter().any(|&b| b != 0)))
                .collect();
            Ok(Release {
                name: name.to_owned(),
                pcrs,
            }
            .to_toml())
        }
        Platform::Tdx | Platform::Sgx => {
            let quote = Quote::parse(&evidence.bytes).context("the quote does not parse")?;
            let values = measurements_of(&quote.body)
                .into_iter()
                .filter(|(k, v)| !TDX_OPTIONAL.contains(k) || v.iter().any(|&b| b != 0))
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let (isv_prod_id, min_isv_svn) = match &quote.body {
                attesta_evidence::dcap::Body::Sgx(r) => (Some(r.isv_prod_id), Some(r.isv_svn)),
                attesta_evidence::dcap::Body::Td(_) => (None, None),
            };
            Ok(DcapRelease {
                name: name.to_owned(),
                tee: quote.tee(),
                values,
                isv_prod_id,
                min_isv_svn,
            }
            .to_toml())
        }
        Platform::SevSnp => {
            let report =
                AttestationReport::parse(&evidence.bytes).context("the report does not parse")?;
            Ok(SnpRelease {
                name: name.to_owned(),
                measurement: report.measurement,
                host_data: report
                    .host_data
                    .iter()
                    .any(|&b| b != 0)
                    .then_some(report.host_data),
            }
            .to_toml())
        }
        other => anyhow::bail!(
            "{other} is a dev TEE: use `attesta measure --tee {}`",
            dev_name(other)
        ),
    }
}

fn dev_name(p: Platform) -> &'static str {
    match p {
        Platform::DevSnp => "dev-snp",
        Platform::DevTdx | Platform::DevSgx => "dev-tdx",
        _ => "dev",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use attesta_evidence::{MeasurementMatch, Registry};

    fn measured(platform: Platform, rel: &str) -> (Evidence, Registry, String) {
        let ev = Evidence {
            platform,
            bytes: attesta_test_support::read_fixture(rel),
            aux: None,
        };
        let toml = release_toml(&ev, "measured").unwrap();
        let registry = Registry::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        (ev, registry, toml)
    }

    // Each printed entry, read back as a releases file, matches the evidence it
    // came from and no other: a measure that printed the wrong fields fails here.

    #[test]
    fn dcap_quotes_give_entries_that_match_them() {
        let (tdx, reg, toml) = measured(Platform::Tdx, "sgx-tdx/phala_tdx_v4_quote.bin");
        assert!(
            toml.contains("platform = \"tdx\"") && toml.contains("rtmr3 = "),
            "{toml}"
        );
        let body = Quote::parse(&tdx.bytes).unwrap().body;
        assert_eq!(reg.check_dcap(&body), Ok("measured".into()));
        let (sgx, sgx_reg, toml) = measured(Platform::Sgx, "sgx-tdx/phala_sgx_v3_quote.bin");
        assert!(
            toml.contains("mrenclave = ") && toml.contains("isvsvn = "),
            "{toml}"
        );
        let sgx_body = Quote::parse(&sgx.bytes).unwrap().body;
        assert_eq!(sgx_reg.check_dcap(&sgx_body), Ok("measured".into()));
        // Crossed: the TDX entry does not pass the SGX quote.
        assert!(reg.check_dcap(&sgx_body).is_err());
    }

    #[test]
    fn snp_reports_give_entries_that_match_them() {
        let (ev, reg, _) = measured(Platform::SevSnp, "sev-snp/trustee_milan_v2_report.bin");
        let r = AttestationReport::parse(&ev.bytes).unwrap();
        assert_eq!(
            reg.check_snp(&r.measurement, &r.host_data),
            Ok("measured".into())
        );
        let mut other = r.measurement;
        other[0] ^= 1;
        assert!(reg.check_snp(&other, &r.host_data).is_err());
    }

    #[test]
    fn nitro_documents_give_entries_that_match_them() {
        let (ev, reg, toml) = measured(Platform::Nitro, "nitro/marlin_2024-02-26_aps1.cbor");
        assert!(toml.contains("0 = ") && toml.contains("2 = "), "{toml}");
        let cose = attesta_evidence::nitro::cose::parse(&ev.bytes).unwrap();
        let doc = attesta_evidence::AttestationDocument::parse(&cose.payload).unwrap();
        assert!(matches!(
            reg.check(&doc.pcrs),
            MeasurementMatch::Matched { .. }
        ));
        let mut pcrs = doc.pcrs.clone();
        pcrs.get_mut(&0).unwrap()[0] ^= 1;
        assert!(matches!(
            reg.check(&pcrs),
            MeasurementMatch::Mismatch { .. }
        ));
    }

    #[test]
    fn dev_evidence_points_at_the_dev_measure() {
        let ev = Evidence {
            platform: Platform::Dev,
            bytes: Vec::new(),
            aux: None,
        };
        let err = release_toml(&ev, "x").unwrap_err().to_string();
        assert!(err.contains("--tee dev"), "{err}");
    }
}
