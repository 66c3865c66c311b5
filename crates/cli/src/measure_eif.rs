//! `attesta measure eif`: the registry entry for a Nitro enclave image file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

/// What `attesta measure` measures besides this binary.
#[derive(Subcommand)]
pub enum MeasureWhat {
    /// PCR0, PCR1, PCR2 (and PCR8 when signed) of a Nitro enclave image (EIF), as
    /// `nitro-cli describe-eif` reports them, printed as a `[[releases]]` registry entry.
    /// Exit 1 if the file is not a well-formed EIF (bad CRC, inconsistent section table).
    Eif(EifArgs),
}

/// Options of `attesta measure eif`.
#[derive(Args)]
pub struct EifArgs {
    /// The enclave image file.
    file: PathBuf,
    /// Release name in the entry [default: the file name without `.eif`].
    #[arg(long)]
    name: Option<String>,
    /// Print `nitro-cli describe-eif`-style JSON (`{"Measurements": {...}}`, also a registry
    /// input) instead of TOML.
    #[arg(long)]
    json: bool,
}

/// Runs `attesta measure eif`.
pub fn run(what: MeasureWhat) -> anyhow::Result<ExitCode> {
    let MeasureWhat::Eif(args) = what;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let m = attesta_evidence::eif::measure(std::io::BufReader::new(file))
        .with_context(|| format!("measuring {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m.describe_json())?);
    } else {
        let name = args.name.unwrap_or_else(|| {
            args.file
                .file_stem()
                .map_or_else(|| "enclave".into(), |s| s.to_string_lossy().into_owned())
        });
        print!("{}", m.release(&name).to_toml());
    }
    Ok(ExitCode::SUCCESS)
}
