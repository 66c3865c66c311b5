//! `attesta models`: the content-addressed model store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use attesta_content::Profile;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::Engine;
use attesta_engine::tract::TractEngine;
use clap::{Args, Subcommand};

use crate::Global;
use crate::units::{parse_duration, parse_size};
use attesta_content::fetch::{FetchProgress, Fetcher};

/// Subcommands of `attesta models`.
#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Add model files to the store; prints one CID per file (as `ipfs add` computes it).
    Add {
        /// Model files to add (ONNX or GGUF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        layout: Layout,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Print the CID `ipfs add` would give a file, without storing it.
    Cid {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        layout: Layout,
    },
    /// Download a model by CID from trustless IPFS gateways, verifying every block
    /// against the CID before it is stored; prints the CID.
    Fetch {
        /// The model's CID.
        cid: String,
        /// Gateway to use, tried in order (repeatable; overrides the configured list);
        /// `vsock:CID:PORT` or `unix:PATH` sends plain HTTP through that socket.
        #[arg(long = "gateway", value_name = "URL")]
        gateways: Vec<String>,
        /// Per-gateway timeout for connecting and for each stall of the download.
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        timeout: String,
        /// Largest model accepted.
        #[arg(long, default_value = "8GiB", value_name = "SIZE")]
        max_bytes: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Enforce the store's disk budget (least recently used first) and remove stale temporary files.
    Gc {
        /// Disk budget to enforce (overrides the configured store_max_bytes).
        #[arg(long, value_name = "SIZE")]
        max_bytes: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// List stored models: CID, size, SHA-256 and, for ONNX models, the input/output
    /// signature; for language models (GGUF) the architecture, quantisation and context.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
}

/// DAG layout options shared by `add` and `cid`.
#[derive(Args)]
pub struct Layout {
    /// CID version: 0 (ipfs add default, dag-pb leaves) or 1 (raw leaves).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    cid_version: u8,
    /// Explicit DAG profile (overrides --cid-version): kubo-default-v0, kubo-cidv1-rawleaves, unixfs-v1-2025.
    #[arg(long)]
    profile: Option<Profile>,
}

impl Layout {
    fn profile(&self) -> Profile {
        self.profile.unwrap_or(if self.cid_version == 1 {
            Profile::KuboCidV1RawLeaves
        } else {
            Profile::KuboDefaultV0
        })
    }
}

/// Which store to use.
#[derive(Args)]
pub struct StoreArg {
    /// Model store directory [default: <data-dir>/models].
    #[arg(long, env = "ATTESTA_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
}

fn open_store(arg: &StoreArg, global: &Global) -> anyhow::Result<ModelStore> {
    open_store_with(arg, global, None)
}

fn open_store_with(
    arg: &StoreArg,
    global: &Global,
    budget: Option<&str>,
) -> anyhow::Result<ModelStore> {
    let dir = arg
        .store
        .clone()
        .or_else(|| global.file.node.store.clone())
        .unwrap_or_else(|| global.data_dir.join("models"));
    let max_bytes = budget
        .or(global.file.node.store_max_bytes.as_deref())
        .map(parse_size)
        .transpose()
        .map_err(|e| anyhow::anyhow!("store_max_bytes: {e}"))?;
    ModelStore::open(
        &dir,
        StoreOptions {
            max_bytes,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening model store {}", dir.display()))
}

/// Runs a `models` subcommand.
pub fn run(cmd: ModelsCmd, global: &Global) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelsCmd::Add {
            files,
            layout,
            store,
        } => {
            let store = open_store(&store, global)?;
            for f in &files {
                let m = store
                    .add_file(f, layout.profile())
                    .with_context(|| format!("adding {}", f.display()))?;
                tracing::info!(file = %f.display(), cid = %m.cid, size = m.size, "stored model");
                println!("{}", m.cid);
            }
        }
        ModelsCmd::Cid { files, layout } => {
            for f in &files {
                println!("{}", cid_of_file(f, layout.profile())?);
            }
        }
        ModelsCmd::Fetch {
            cid,
            gateways,
            timeout,
            max_bytes,
            store,
        } => {
            let cid: attesta_content::Cid = cid
                .parse()
                .map_err(|e| anyhow::anyhow!("{cid:?} is not a CID: {e}"))?;
            let store = open_store(&store, global)?;
            let mut gw = crate::node_cmd::gateway_config(
                &gateways,
                global.file.node.gateways.as_deref().unwrap_or_default(),
            );
            gw.timeout = parse_duration(&timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
            gw.max_model_bytes =
                parse_size(&max_bytes).map_err(|e| anyhow::anyhow!("--max-bytes: {e}"))?;
            let bar = Bar::new();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(async {
                crate::node_cmd::open_tunnels(&mut gw.urls).await?;
                let fetched = Fetcher::new(gw, store).fetch(&cid, &bar).await;
                fetched.with_context(|| format!("fetching {cid}"))
            });
            bar.finish();
            let m = result?;
            tracing::info!(cid = %m.cid, size = m.size, sha256 = %m.sha256_hex(), "fetched and verified model");
            println!("{}", m.cid);
        }
        ModelsCmd::Gc { max_bytes, store } => {
            let store = open_store_with(&store, global, max_bytes.as_deref())?;
            let report = store.gc().context("collecting the store")?;
            for cid in &report.evicted {
                println!("evicted {cid}");
            }
            println!(
                "freed {} bytes, removed {} temporary file(s), {} bytes remain",
                report.freed_bytes, report.tmp_removed, report.total_bytes
            );
        }
        ModelsCmd::Ls { json, store } => {
            let store = open_store(&store, global)?;
            let engine = TractEngine::new(1);
            let mut rows = Vec::new();
            for m in store.list().context("listing the store")? {
                // Language models are described from their GGUF metadata (no weights read);
                // anything else is loaded with the ONNX engine for its signature.
                let llm = is_gguf_file(&m.path).then(|| attesta_llm::describe(&m.path));
                let signature = match &llm {
                    Some(Ok(info)) => Ok(format!(
                        "llm {} {} ctx {} ({:.2}B params)",
                        info.architecture,
                        info.quantisation,
                        info.context_length,
                        info.parameters as f64 / 1e9
                    )),
                    Some(Err(e)) => Err(e.to_string()),
                    None => std::fs::read(&m.path)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| {
                            engine
                                .load(&bytes, &Default::default())
                                .map_err(|e| e.to_string())
                        })
                        .map(|model| {
                            let sig = |v: &[attesta_engine::TensorInfo]| {
                                v.iter()
                                    .map(|t| t.signature())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            };
                            format!(
                                "({}) -> ({})",
                                sig(&model.info().inputs),
                                sig(&model.info().outputs)
                            )
                        }),
                };
                let llm = llm.and_then(Result::ok);
                rows.push((m, signature, llm));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(m, sig, llm)| {
                        serde_json::json!({
                            "cid": m.cid.to_string(),
                            "size": m.size,
                            "sha256": hex::encode(m.sha256),
                            "signature": sig.as_ref().ok(),
                            "load_error": sig.as_ref().err(),
                            "llm": llm,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<60} {:>12}  {:<64}  SIGNATURE", "CID", "SIZE", "SHA256");
                for (m, sig, _) in &rows {
                    let sig = match sig {
                        Ok(s) => s.clone(),
                        Err(e) => format!("<cannot load: {e}>"),
                    };
                    println!(
                        "{:<60} {:>12}  {:<64}  {sig}",
                        m.cid.to_string(),
                        m.size,
                        hex::encode(m.sha256)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the file starts with the GGUF magic.
fn is_gguf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && attesta_llm::is_gguf(&magic)
}

fn cid_of_file(path: &Path, profile: Profile) -> anyhow::Result<attesta_content::Cid> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    attesta_content::cid_of_reader(std::io::BufReader::with_capacity(1 << 20, f), profile)
        .with_context(|| format!("hashing {}", path.display()))
}

/// A terminal progress bar for downloads (hidden when stderr is not a terminal).
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Bar(bar)
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl FetchProgress for Bar {
    fn update(&self, verified: u64, total: Option<u64>) {
        if let Some(t) = total {
            self.0.set_length(t);
        }
        self.0.set_position(verified);
    }

    fn attempt(&self, gateway: &str, mode: &str) {
        self.0.set_message(format!("{gateway} ({mode})"));
        self.0.set_position(0);
    }
}
