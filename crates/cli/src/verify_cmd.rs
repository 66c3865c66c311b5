//! `attesta verify` and `attesta measure`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use attesta_evidence::{
    Detected, Envelope, EvidenceVerifier, Expected, NitroVerifier, Platform, Report, SnpVerifier,
    UnixTime, detect, pem,
};
use attesta_seal::{BundleChecks, ProofBundle};
use clap::{Args, Subcommand};

use crate::policy_args::PolicyArgs;

/// Subcommands of `attesta verify`.
#[derive(Subcommand)]
pub enum VerifyCmd {
    /// Verify evidence and print a per-step report: a Nitro/dev document (raw CBOR, base64 or
    /// hex), a SEV-SNP report (1184 bytes raw, hex or base64; certificates from --vcek/--certs),
    /// an Intel SGX/TDX DCAP quote (raw, hex or base64; collateral from --collateral) or an
    /// evidence envelope (JSON); the format is detected unless --platform is given;
    /// `-` reads stdin. Exit 0 only when every required check passed, 3 when one failed
    /// (the report names the failed step; for Intel TCB, the status and advisory IDs).
    /// A fault a dev node declares is printed (`fault: ... (declared; INSECURE)`) and fails
    /// with `fault_declared` unless `--accept-declared-faults` is given.
    Evidence(Box<EvidenceArgs>),
    /// Verify a proof bundle offline: the evidence under the policy, the key binding, the
    /// receipt signature and, when given, the request/output digests. Exit 0 only when verified.
    /// A fault declared in the bundle's evidence is printed and refused as for `evidence`.
    Receipt(Box<ReceiptArgs>),
}

/// Options of `attesta verify receipt`.
#[derive(Args)]
pub struct ReceiptArgs {
    /// The proof bundle JSON (`attesta infer --bundle`); `-` reads stdin.
    bundle: PathBuf,
    /// Check the evidence as of this time (RFC 3339) instead of the evidence's own timestamp.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The `output` JSON the receipt must digest (`attesta infer --save-output`).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The request plaintext the receipt must digest (`attesta infer --save-request`).
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `attesta verify evidence`.
#[derive(Args)]
pub struct EvidenceArgs {
    /// The document.
    file: PathBuf,
    /// Verify as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The nonce the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// The `user_data` the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    user_data: Option<String>,
    /// The `public_key` the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    public_key: Option<String>,
    /// The 64-byte `report_data` a SEV-SNP report or DCAP quote must carry (hex).
    #[arg(long, value_name = "HEX")]
    report_data: Option<String>,
    /// Read the file as this platform's evidence instead of detecting the format:
    /// nitro, dev, sev-snp, dev-snp, sgx, tdx, dev-sgx, dev-tdx. The verified platform must
    /// be the one named (a dev root never passes as hardware).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// The VCEK or VLEK certificate of a SEV-SNP report (PEM or DER).
    #[arg(long, value_name = "FILE")]
    vcek: Option<PathBuf>,
    /// A directory of SEV-SNP certificates (PEM or DER: VCEK/VLEK, optionally ASK/ASVK, ARK
    /// or a KDS `cert_chain`); roots are still pinned, never taken from here.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Collateral of a DCAP quote: a JSON file in dcap-qvl's QuoteCollateralV3 shape, or a
    /// directory of raw Intel PCS responses (tcb_info.json, qe_identity.json, pck_crl.der,
    /// root_ca_crl.der, tcb_signing_chain.pem). Replaces an envelope's own collateral.
    #[arg(long, value_name = "PATH")]
    collateral: Option<PathBuf>,
    /// Fetch the VCEK (by chip id and reported TCB) and the ASK/ARK of a bare SEV-SNP report
    /// from this AMD KDS base URL when no certificate is given (what it returns is verified
    /// like any other certificate).
    #[arg(long, value_name = "URL")]
    kds: Option<String>,
    /// Cache KDS answers in this directory.
    #[arg(long, value_name = "DIR", requires = "kds")]
    kds_cache: Option<PathBuf>,
    /// Fetch the collateral of a bare DCAP quote from this Intel PCS or PCCS base URL
    /// (e.g. https://api.trustedservices.intel.com) when --collateral is not given; what it
    /// returns is verified against the pinned Intel root like any other collateral.
    #[arg(long, value_name = "URL", conflicts_with = "collateral")]
    pccs: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `attesta measure`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeasureArgs {
    #[command(subcommand)]
    what: Option<crate::measure_eif::MeasureWhat>,
    /// Release name to print.
    #[arg(long, default_value = "attesta-dev")]
    name: String,
    /// Measure this executable instead of the running one.
    #[arg(long, value_name = "FILE")]
    executable: Option<PathBuf>,
    /// Also pin the inference library a node runs with (its `--ort-lib`), reported by the dev
    /// TEE in PCR9.
    #[arg(long, value_name = "FILE")]
    engine_lib: Option<PathBuf>,
    /// Print the entry for this TEE: `dev` (PCR0, the default), `dev-snp` (the SEV-SNP
    /// launch measurement the dev-snp TEE reports), `dev-tdx` (the MRTD and RTMR0-3 the
    /// dev-tdx TEE reports), or the hardware TEE this runs in, read from a fresh quote of
    /// its own: `nitro` (PCR0-2, PCR8 when signed), `tsm` (TDX: MRTD, RTMR0-3 and the
    /// owner/config IDs when set; SEV-SNP: measurement, host_data when set), `gramine`
    /// (SGX: MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN) or `auto`.
    #[arg(long, value_name = "TEE", default_value = "dev")]
    tee: String,
}

fn hex_arg(v: &Option<String>, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
    v.as_deref()
        .map(|h| hex::decode(h.trim()).with_context(|| format!("--{what} is not hex")))
        .transpose()
}

/// Reads a file argument, `-` meaning stdin.
pub fn read_input(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The verification time: `--at` or the system clock.
pub fn now_or(at: Option<&str>) -> anyhow::Result<UnixTime> {
    match at {
        Some(t) => UnixTime::parse_rfc3339(t).ok_or_else(|| {
            anyhow::anyhow!("--at {t:?} is not an RFC 3339 time (e.g. 2024-02-26T08:00:00Z)")
        }),
        None => Ok(UnixTime::from_system(std::time::SystemTime::now())),
    }
}

/// Runs `attesta verify ...`.
pub fn run(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        VerifyCmd::Evidence(args) => {
            let policy = args.policy.policy()?;
            if policy.measurements().is_empty() {
                eprintln!("warning: no --measurements given: any enclave image is accepted");
            }
            let input = read_input(&args.file)?;
            let expected = Expected {
                nonce: hex_arg(&args.nonce, "nonce")?,
                user_data: hex_arg(&args.user_data, "user-data")?,
                public_key: hex_arg(&args.public_key, "public-key")?,
                report_data: hex_arg(&args.report_data, "report-data")?,
            };
            let mut certs = load_certs(args.vcek.as_deref(), args.certs.as_deref())?;
            if let Some(base) = &args.kds
                && certs.is_empty()
                && detect(&input) == Detected::SnpReport
            {
                certs = kds_certs(base, args.kds_cache.clone(), &input)?;
            }
            let now = now_or(args.at.as_deref())?;
            let claimed = args.platform.as_deref().map(parse_platform).transpose()?;
            let mut collateral = args
                .collateral
                .as_deref()
                .map(load_collateral)
                .transpose()?;
            if let Some(base) = &args.pccs
                && detect(&input) == Detected::DcapQuote
            {
                collateral = Some(pcs_collateral(base, &input, now)?);
            }
            let (report, ok) = verify_evidence(
                policy,
                &input,
                claimed,
                EvidenceExtras { certs, collateral },
                &expected,
                now,
            );
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_REJECTED)
            })
        }
        VerifyCmd::Receipt(args) => {
            let policy = args.policy.policy()?;
            let bundle = ProofBundle::from_json(&read_input(&args.bundle)?);
            let bundle = match bundle {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: not a proof bundle: {e}");
                    return Ok(ExitCode::from(crate::EXIT_REJECTED));
                }
            };
            let output = args.output.as_deref().map(read_input).transpose()?;
            let request = args.request.as_deref().map(read_input).transpose()?;
            let at = args.at.as_deref().map(|t| now_or(Some(t))).transpose()?;
            let checks = BundleChecks {
                at,
                request: request.as_deref(),
                output: output.as_deref(),
            };
            let verification = bundle.verify(&EvidenceVerifier::new(policy), checks);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&verification.report)?);
            } else {
                println!("{}", verification.report);
            }
            Ok(if verification.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_REJECTED)
            })
        }
    }
}

/// The VCEK and chain of a bare SNP report, from the KDS at `base`.
fn kds_certs(base: &str, cache: Option<PathBuf>, input: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    use attesta_evidence::snp::{AttestationReport, decode_report};
    let (_, bytes) = decode_report(input).map_err(|e| anyhow::anyhow!("report: {e}"))?;
    let report = AttestationReport::parse(&bytes).map_err(|e| anyhow::anyhow!("report: {e}"))?;
    let client =
        attesta_client::kds::KdsClient::new(base, cache, std::time::Duration::from_secs(30))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    rt.block_on(client.certs_for(&report))
        .context("fetching the VCEK from the KDS")
}

/// The collateral of a bare DCAP quote, from the PCS/PCCS at `base`.
fn pcs_collateral(base: &str, input: &[u8], now: UnixTime) -> anyhow::Result<serde_json::Value> {
    let quote = attesta_evidence::dcap::decode_quote(input)
        .ok_or_else(|| anyhow::anyhow!("not a DCAP quote (raw, hex or base64)"))?;
    let client = attesta_client::PcsClient::new(base, std::time::Duration::from_secs(30))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let collateral = rt
        .block_on(client.for_quote(&quote, now))
        .context("fetching DCAP collateral from the PCCS")?;
    Ok(serde_json::to_value(collateral.to_json())?)
}

/// Parses a `--platform` value (the envelope's names).
fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        anyhow::anyhow!(
            "--platform {s:?}: expected nitro, dev, sev-snp, dev-snp, sgx, tdx, dev-sgx or dev-tdx"
        )
    })
}

/// Reads one certificate file (PEM, possibly several blocks, or DER).
fn read_cert_file(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => pem::certificates(text)
            .with_context(|| format!("reading PEM certificates from {}", path.display())),
        _ => Ok(vec![bytes]),
    }
}

/// The certificates of `--vcek FILE` and `--certs DIR` (files ending in
/// .pem, .der, .crt or .cer, in name order).
pub fn load_certs(
    vcek: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if let Some(p) = vcek {
        out.extend(read_cert_file(p)?);
    }
    if let Some(d) = dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "pem" | "der" | "crt" | "cer"))
            })
            .collect();
        paths.sort();
        for p in paths {
            for der in read_cert_file(&p)? {
                if !out.contains(&der) {
                    out.push(der);
                }
            }
        }
    }
    Ok(out)
}

/// Reads `--collateral`: a `QuoteCollateralV3` JSON file or a directory of
/// raw PCS responses; parsed here so a malformed file is named as such.
pub fn load_collateral(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use attesta_evidence::dcap::{Collateral, PcsFiles, files};
    let parsed = if path.is_dir() {
        let read = |name: &str| {
            let p = path.join(name);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        let chain = read(files::TCB_SIGNING_CHAIN)?;
        let chain = std::str::from_utf8(&chain)
            .with_context(|| format!("{} is not text", files::TCB_SIGNING_CHAIN))?;
        Collateral::from_pcs(PcsFiles {
            tcb_info_json: &read(files::TCB_INFO)?,
            qe_identity_json: &read(files::QE_IDENTITY)?,
            pck_crl: &read(files::PCK_CRL)?,
            root_ca_crl: &read(files::ROOT_CA_CRL)?,
            tcb_signing_chain_pem: chain,
        })
    } else {
        Collateral::from_json(&read_input(path)?)
    }
    .with_context(|| format!("parsing collateral {}", path.display()))?;
    Ok(serde_json::to_value(parsed.to_json())?)
}

/// What a verifier may need beside the evidence itself.
#[derive(Debug, Default)]
pub struct EvidenceExtras {
    /// `--vcek` / `--certs` (SEV-SNP).
    pub certs: Vec<Vec<u8>>,
    /// `--collateral` (DCAP), as `QuoteCollateralV3` JSON.
    pub collateral: Option<serde_json::Value>,
}

/// Verifies evidence of any supported format: an envelope goes through the
/// platform dispatch (with its claimed platform checked), a bare Nitro
/// document, SNP report or DCAP quote through its verifier. `claimed`
/// overrides detection (and is then checked like an envelope's).
pub fn verify_evidence(
    policy: attesta_evidence::Policy,
    input: &[u8],
    claimed: Option<Platform>,
    extras: EvidenceExtras,
    expected: &Expected,
    now: UnixTime,
) -> (Report, bool) {
    let EvidenceExtras { certs, collateral } = extras;
    let detected = detect(input);
    if detected == Detected::Envelope {
        let mut env = match Envelope::from_json(input) {
            Ok(e) => e,
            Err(e) => return (refused(now, &e.to_string(), e.code()), false),
        };
        if let Some(p) = claimed
            && p != env.platform
        {
            let msg = format!("--platform {p} but the envelope says {}", env.platform);
            return (refused(now, &msg, "platform_mismatch"), false);
        }
        env.certs.extend(certs);
        if collateral.is_some() {
            env.collateral = collateral;
        }
        let v = EvidenceVerifier::new(policy).verify(&env, expected, now);
        return (v.report, v.outcome.is_ok());
    }
    let platform = match (claimed, detected) {
        (Some(p), _) => p,
        (None, Detected::SnpReport) => Platform::SevSnp,
        (None, Detected::DcapQuote) => {
            // No claim to check: the DCAP verifier names the platform it
            // verified (dev-sgx / dev-tdx when the chain ends at a dev root).
            let env = Envelope {
                collateral,
                ..Envelope::new(Platform::Tdx, input.to_vec())
            };
            let verifier = attesta_evidence::dcap::DcapVerifier::new(policy);
            let (report, outcome) =
                attesta_evidence::dispatch::verify_dcap(&verifier, &env, expected, now);
            return (report, outcome.is_ok());
        }
        (None, _) => Platform::Nitro,
    };
    match platform {
        Platform::SevSnp | Platform::DevSnp => {
            let v = SnpVerifier::new(policy).verify(input, &certs, expected, now);
            (v.report, v.outcome.is_ok())
        }
        Platform::Nitro | Platform::Dev => {
            let v = NitroVerifier::new(policy).verify(input, expected, now);
            (v.report, v.outcome.is_ok())
        }
        _ => {
            let env = Envelope {
                collateral,
                ..Envelope::new(platform, input.to_vec()).with_certs(certs)
            };
            let v = EvidenceVerifier::new(policy).verify(&env, expected, now);
            (v.report, v.outcome.is_ok())
        }
    }
}

/// A report for input that never reached a verifier.
fn refused(now: UnixTime, message: &str, code: &'static str) -> Report {
    Report::refused(now, attesta_evidence::StepId::Envelope, code, message)
}

/// Runs `attesta measure`: the registry entry for this (or the given) executable as the dev TEE measures it.
pub fn measure(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    if let Some(what) = args.what {
        return crate::measure_eif::run(what);
    }
    let exe = match args.executable {
        Some(p) => p,
        None => std::env::current_exe().context("locating the running executable")?,
    };
    match args.tee.as_str() {
        "dev" => {
            let release =
                attesta_attester::dev::release_for(&exe, args.engine_lib.as_deref(), &args.name)
                    .with_context(|| format!("measuring {}", exe.display()))?;
            print!("{}", release.to_toml());
        }
        "dev-snp" => {
            let measurement = attesta_attester::dev::measure_executable(&exe)
                .with_context(|| format!("measuring {}", exe.display()))?;
            let release = attesta_evidence::SnpRelease {
                name: args.name,
                measurement,
                host_data: None,
            };
            print!("{}", release.to_toml());
        }
        "dev-tdx" => {
            let release = attesta_attester::dev_tdx::release_for(&exe, &args.name)
                .with_context(|| format!("measuring {}", exe.display()))?;
            print!(
                "{}",
                attesta_attester::dev_tdx::release_toml(&release, "dev-tdx")
            );
        }
        hw @ ("nitro" | "tsm" | "gramine" | "auto") => {
            let kind: attesta_attester::TeeKind = hw
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--tee: {e}"))?;
            crate::measure_hw::run(kind, &args.name)?;
        }
        other => anyhow::bail!(
            "--tee {other:?}: expected dev, dev-snp, dev-tdx, nitro, tsm, gramine or auto"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
