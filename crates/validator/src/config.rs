//! The validator's TOML config (`attesta validator --config FILE`). Relative
//! paths are resolved against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use attesta_evidence::{Policy, PolicyFile, TrustedRoot, danger};

use crate::challenge::ChallengeSpec;
use crate::llm_challenge::LlmChallengeSpec;
use crate::scoring::ScoringParams;

/// Why the config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config is not valid TOML for this schema.
    #[error("config {path}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser message.
        reason: String,
        /// The TOML parser's error, when it was the parser that refused.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
    /// The config could not be rendered back to TOML.
    #[error("config: {0}")]
    Render(#[source] toml::ser::Error),
    /// The measurements file is unusable.
    #[error("measurements {path}: {source}")]
    Measurements {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: attesta_evidence::RegistryError,
    },
    /// The dev root (or the pinned AWS root) is unusable: the verifier's
    /// error for that root, kept as the cause.
    #[error("trusted root: {0}")]
    Root(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The `[validator.bittensor]` wallet hotkey could not be loaded.
    #[error("bittensor hotkey: {0}")]
    Wallet(#[source] attesta_bittensor::wallet::WalletError),
    /// The `[validator.bittensor]` dev key URI is not one we derive.
    #[error("bittensor hotkey: {0}")]
    DevKey(#[source] attesta_bittensor::keys::KeyError),
}

impl ConfigError {
    /// A [`ConfigError::Syntax`] for text the TOML parser (or the schema) refused,
    /// keeping the parser's error; the path is filled in by [`ValidatorConfig::load`].
    fn toml(e: toml::de::Error) -> Self {
        ConfigError::Syntax {
            path: PathBuf::new(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

/// `[validator.bittensor]`: the validator's hotkey, which signs its calls to nodes reached
/// through their axons (`via = "axon"` in the node list). btcli's wallet layout. With
/// `endpoint` and `netuid`, the nodes are the subnet's neurons that serve an axon (the
/// metagraph), and the `nodes` file is not read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BittensorConfig {
    /// Wallets directory (default `~/.bittensor/wallets`).
    pub wallet_path: Option<PathBuf>,
    /// Wallet name (default `default`).
    pub wallet_name: Option<String>,
    /// Hotkey name (default `default`); the keyfile must be unencrypted.
    pub wallet_hotkey: Option<String>,
    /// A PUBLIC dev key such as `//Bob` instead of a wallet (devnets and tests only).
    pub hotkey_uri: Option<String>,
    /// The chain's JSON-RPC WebSocket (`ws://` or `wss://`), e.g. a subtensor node's
    /// `ws://127.0.0.1:9944`; set with `netuid` (env `ATTESTA_CHAIN_ENDPOINT` on
    /// `attesta validator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The subnet whose neurons are validated (env `ATTESTA_NETUID` on `attesta validator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netuid: Option<u16>,
    /// With `endpoint`: whether epoch weights go to the chain (default true): committed
    /// (commit-reveal v4) or set, besides the weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_weights: Option<bool>,
    /// `"auto"` (default: follow the subnet), `"on"` (always commit; refuse if the subnet has
    /// commit-reveal off) or `"off"` (always `set_weights`; refuse if it is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_reveal: Option<attesta_bittensor::chain::weights::CommitReveal>,
    /// The weights version key to send (default: the subnet's `WeightsVersionKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_key: Option<u64>,
    /// The chain's block time in milliseconds, for the commit's drand round (default 12000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_time_ms: Option<u64>,
}

impl BittensorConfig {
    /// Loads the hotkey.
    pub fn hotkey(&self) -> Result<attesta_bittensor::Hotkey, ConfigError> {
        if let Some(uri) = &self.hotkey_uri {
            return attesta_bittensor::Hotkey::from_dev_uri(uri).map_err(ConfigError::DevKey);
        }
        let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "default".into());
        attesta_bittensor::WalletSpec {
            path: self
                .wallet_path
                .clone()
                .unwrap_or_else(|| attesta_bittensor::wallet::DEFAULT_WALLET_PATH.into()),
            name: or_default(&self.wallet_name),
            hotkey: or_default(&self.wallet_hotkey),
        }
        .load_hotkey()
        .map_err(ConfigError::Wallet)
    }
}

/// Attestation policy settings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Registry of allowed measurements (nitro-cli JSON or our TOML); none = any measurement.
    pub measurements: Option<PathBuf>,
    /// PEM of a dev root to accept (`dev (insecure)` documents). Absent = hardware only.
    pub dev_root: Option<PathBuf>,
    /// PEM of a dev-snp ARK to accept (`dev-snp (insecure)` SEV-SNP reports). Absent = hardware only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp_dev_root: Option<PathBuf>,
    /// PEM of a dev DCAP root to accept (`dev-tdx (insecure)` / `dev-sgx (insecure)` quotes,
    /// the node's `dev-dcap-root.pem`). Absent = Intel's root only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcap_dev_root: Option<PathBuf>,
    /// Maximum document age in seconds (default 300).
    pub max_age_secs: Option<u64>,
    /// INSECURE (devnets, validator tests): accept dev documents that declare an
    /// `--insecure-fault`, so such nodes are judged by their answers instead of
    /// failing attestation. Needs `dev_root`; hardware documents never declare one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_declared_faults: bool,
}

/// Round timing and sizes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoundConfig {
    /// Pause between the end of a round and the start of the next (ms).
    pub interval_ms: u64,
    /// Nodes checked at once.
    pub concurrency: usize,
    /// Budget for one node's whole check: attestation + all its challenges (ms).
    pub node_timeout_ms: u64,
    /// Sealed challenges per node per round.
    pub challenges_per_node: u32,
    /// Weights are emitted every this many rounds.
    pub epoch_rounds: u64,
    /// Proof bundles kept in the database (newest first).
    pub max_bundles: u64,
    /// Stop after this many committed rounds in total (absent = run forever).
    pub max_rounds: Option<u64>,
}

impl Default for RoundConfig {
    fn default() -> Self {
        RoundConfig {
            interval_ms: 5_000,
            concurrency: 32,
            node_timeout_ms: 5_000,
            challenges_per_node: 1,
            epoch_rounds: 10,
            max_bundles: 1_000,
            max_rounds: None,
        }
    }
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

/// The challenge set.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengesConfig {
    /// Model store directory holding the challenge models.
    pub store: PathBuf,
    /// The models.
    pub models: Vec<ChallengeSpec>,
    /// Language models (GGUF) challenged with random prompts, one challenge per node per
    /// round when any is listed (`[[validator.challenges.llm]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llm: Vec<LlmChallengeSpec>,
}

/// The whole config file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Static node list (`{id, url, hotkey?}`, TOML or JSON); may be left out when
    /// `[validator.bittensor]` names a chain (the nodes are then its metagraph).
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub nodes: PathBuf,
    /// SQLite database.
    pub database: PathBuf,
    /// Weights JSON, rewritten atomically every epoch.
    pub weights_file: PathBuf,
    /// Address for `GET /v1/nodes` and `GET /metrics` (absent = no HTTP).
    pub listen: Option<SocketAddr>,
    /// Attestation policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Rounds.
    #[serde(default)]
    pub rounds: RoundConfig,
    /// Scoring.
    #[serde(default)]
    pub scoring: ScoringParams,
    /// Challenge models.
    pub challenges: ChallengesConfig,
    /// The validator's Bittensor hotkey, for nodes reached through axons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bittensor: Option<BittensorConfig>,
    /// Serving users' requests (`[validator.gateway]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<crate::gateway::GatewayConfig>,
}

impl ValidatorConfig {
    /// Reads the `[validator]` section of an attesta config file; relative
    /// paths are taken relative to `base`.
    pub fn load(path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Syntax { reason, source, .. } => ConfigError::Syntax {
                path: path.to_path_buf(),
                reason,
                source,
            },
            other => other,
        })
    }

    /// Parses config text and takes its `[validator]` section.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let syntax = |reason: String| ConfigError::Syntax {
            path: PathBuf::new(),
            reason,
            source: None,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(ConfigError::toml)?;
        match table.remove("validator") {
            Some(toml::Value::Table(t)) => Self::from_table(t, base),
            Some(_) => Err(syntax("`validator` must be a table".into())),
            None => Err(syntax("no [validator] section".into())),
        }
    }

    /// Builds the config from an already parsed `[validator]` table.
    pub fn from_table(table: toml::Table, base: &Path) -> Result<Self, ConfigError> {
        let mut c: ValidatorConfig = toml::Value::Table(table)
            .try_into()
            .map_err(ConfigError::toml)?;
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if !c.nodes.as_os_str().is_empty() {
            fix(&mut c.nodes);
        }
        fix(&mut c.database);
        fix(&mut c.weights_file);
        fix(&mut c.challenges.store);
        if let Some(p) = c.policy.measurements.as_mut() {
            fix(p);
        }
        if let Some(p) = c.policy.dev_root.as_mut() {
            fix(p);
        }
        if let Some(p) = c.policy.snp_dev_root.as_mut() {
            fix(p);
        }
        if let Some(p) = c.policy.dcap_dev_root.as_mut() {
            fix(p);
        }
        if let Some(p) = c.bittensor.as_mut().and_then(|b| b.wallet_path.as_mut())
            && !p.starts_with("~")
        {
            fix(p);
        }
        c.validate()?;
        Ok(c)
    }

    /// Renders the config as a complete `[validator]` section.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        #[derive(serde::Serialize)]
        struct Wrap<'a> {
            validator: &'a ValidatorConfig,
        }
        toml::to_string(&Wrap { validator: self }).map_err(ConfigError::Render)
    }

    /// Range checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let chain = self
            .bittensor
            .as_ref()
            .is_some_and(|b| b.endpoint.is_some());
        if self.nodes.as_os_str().is_empty() && !chain {
            return Err(ConfigError::Invalid(
                "nodes: a node list is needed unless [validator.bittensor] names an endpoint"
                    .into(),
            ));
        }
        if let Some(b) = &self.bittensor {
            match (&b.endpoint, b.netuid) {
                (Some(e), Some(_)) if e.starts_with("ws://") || e.starts_with("wss://") => {}
                (Some(e), Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "bittensor.endpoint {e:?}: want a ws:// or wss:// URL"
                    )));
                }
                (None, None) => {}
                _ => {
                    return Err(ConfigError::Invalid(
                        "bittensor: endpoint and netuid go together".into(),
                    ));
                }
            }
        }
        let r = &self.rounds;
        if r.concurrency == 0
            || r.node_timeout_ms == 0
            || r.challenges_per_node == 0
            || r.epoch_rounds == 0
        {
            return Err(ConfigError::Invalid(
                "rounds: concurrency, node_timeout_ms, challenges_per_node and epoch_rounds must be ≥ 1".into(),
            ));
        }
        let s = &self.scoring;
        let rates_ok = s.alpha > 0.0 && s.alpha <= 1.0 && (0.0..1.0).contains(&s.failure_decay);
        if !rates_ok {
            return Err(ConfigError::Invalid(
                "scoring: need 0 < alpha ≤ 1 and 0 ≤ failure_decay < 1".into(),
            ));
        }
        let window_ok =
            s.slowest_fraction > 0.0 && s.slowest_fraction <= 1.0 && s.t_min_offset_secs >= 0.0;
        if !window_ok {
            return Err(ConfigError::Invalid(
                "scoring: need 0 < slowest_fraction ≤ 1 and t_min_offset_secs ≥ 0".into(),
            ));
        }
        if self.policy.accept_declared_faults && self.policy.dev_root.is_none() {
            return Err(ConfigError::Invalid(
                "policy: accept_declared_faults only applies to dev documents; set dev_root".into(),
            ));
        }
        if self.challenges.models.is_empty() {
            return Err(ConfigError::Invalid(
                "challenges: at least one model is required".into(),
            ));
        }
        for m in &self.challenges.models {
            m.validate().map_err(ConfigError::Invalid)?;
        }
        for m in &self.challenges.llm {
            m.validate().map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// Per-node timeout.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.rounds.node_timeout_ms)
    }

    /// Builds the attestation policy: the pinned AWS root, the measurement
    /// registry, the max age, and the dev root only when the config names one.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let mut policy = Policy::aws_nitro().map_err(|e| ConfigError::Root(e.into()))?;
        if let Some(path) = &self.policy.measurements {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let file = PolicyFile::parse(&text).map_err(|source| ConfigError::Measurements {
                path: path.clone(),
                source,
            })?;
            // The whole file, as every other verifier reads it: measurements, max age, SNP
            // VMPL and the relaxations it names explicitly.
            policy = file.apply(policy);
        }
        if let Some(secs) = self.policy.max_age_secs {
            policy = policy.with_max_age(Duration::from_secs(secs));
        }
        if let Some(path) = &self.policy.dev_root {
            let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let root =
                TrustedRoot::from_pem("dev root", &pem).map_err(|e| ConfigError::Root(e.into()))?;
            policy = danger::accept_dev_root(policy, root);
        }
        if let Some(path) = &self.policy.snp_dev_root {
            let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let root = attesta_evidence::snp::SnpDevRoot::from_pem("dev-snp ARK (insecure)", &pem)
                .map_err(|e| ConfigError::Root(e.into()))?;
            policy = danger::accept_snp_dev_root(policy, root);
        }
        if let Some(path) = &self.policy.dcap_dev_root {
            let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let root = attesta_evidence::dcap::DcapRoot::from_pem("dev (insecure)", &pem)
                .map_err(|e| ConfigError::Root(e.into()))?;
            policy = danger::accept_dcap_dev_root(policy, root);
        }
        if self.policy.accept_declared_faults {
            policy = danger::accept_declared_faults(policy);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[validator]
nodes = "nodes.toml"
database = "state/v.sqlite"
weights_file = "/abs/weights.json"
[validator.challenges]
store = "models"
[[validator.challenges.models]]
cid = "bafkreia"
"#;

    #[test]
    fn llm_challenges_parse_with_defaults() {
        let text = format!(
            "{MIN}[[validator.challenges.llm]]\ncid = \"bafkreib\"\n[[validator.challenges.llm]]\ncid = \"bafkreic\"\nprompt_tokens = 8\ncompletion_tokens = 16\ntolerance = 0.1\n"
        );
        let c = ValidatorConfig::parse(&text, Path::new("/etc/attesta")).unwrap();
        assert_eq!(c.challenges.llm.len(), 2);
        assert_eq!(c.challenges.llm[0], LlmChallengeSpec::new("bafkreib"));
        assert_eq!(c.challenges.llm[1].completion_tokens, 16);
        let bad = format!("{MIN}[[validator.challenges.llm]]\ncid = \"b\"\ntemperature = 1\n");
        assert!(ValidatorConfig::parse(&bad, Path::new("/")).is_err());
        let zero =
            format!("{MIN}[[validator.challenges.llm]]\ncid = \"b\"\ncompletion_tokens = 0\n");
        assert!(ValidatorConfig::parse(&zero, Path::new("/")).is_err());
    }

    #[test]
    fn parses_and_resolves_paths() {
        let c = ValidatorConfig::parse(MIN, Path::new("/etc/attesta")).unwrap();
        assert_eq!(c.nodes, Path::new("/etc/attesta/nodes.toml"));
        assert_eq!(c.database, Path::new("/etc/attesta/state/v.sqlite"));
        assert_eq!(c.weights_file, Path::new("/abs/weights.json"));
        assert_eq!(c.rounds.concurrency, 32);
        assert_eq!(c.scoring.failure_decay, 0.6);
        assert!(c.listen.is_none());
        let p = c.policy().unwrap();
        assert!(p.dev_root().is_none(), "no dev root unless configured");
        // Round trip through the rendered form.
        let again = ValidatorConfig::parse(&c.to_toml().unwrap(), Path::new("/elsewhere")).unwrap();
        assert_eq!(again.database, c.database);
        assert!(matches!(
            ValidatorConfig::parse("x = 1", Path::new(".")),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn errors_keep_their_cause() {
        use std::error::Error as _;
        // TOML the parser refuses: the parser's error is the source, and the
        // message is unchanged.
        let err = ValidatorConfig::parse("[validator", Path::new(".")).unwrap_err();
        let source = err.source().expect("the TOML error is kept");
        assert!(source.downcast_ref::<toml::de::Error>().is_some());
        assert!(err.to_string().starts_with("config : "), "{err}");
        // A reason of our own has no cause to keep.
        let err = ValidatorConfig::parse("x = 1", Path::new(".")).unwrap_err();
        assert!(err.source().is_none());
        // An unusable dev root keeps the verifier's error.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("root.pem");
        std::fs::write(&pem, "not a certificate").unwrap();
        let mut c = ValidatorConfig::parse(MIN, Path::new(".")).unwrap();
        c.policy.dev_root = Some(pem);
        let err = c.policy().unwrap_err();
        assert!(matches!(err, ConfigError::Root(_)), "{err}");
        assert!(err.source().is_some(), "{err}");
    }

    #[test]
    fn bittensor_section_names_the_hotkey() {
        let dev = format!("{MIN}\n[validator.bittensor]\nhotkey_uri = \"//Bob\"\n");
        let c = ValidatorConfig::parse(&dev, Path::new("/etc/attesta")).unwrap();
        let bt = c.bittensor.clone().unwrap();
        assert_eq!(
            bt.hotkey().unwrap().account().to_ss58(),
            "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
        );
        let wallet = format!(
            "{MIN}\n[validator.bittensor]\nwallet_path = \"wallets\"\nwallet_name = \"v\"\n"
        );
        let c = ValidatorConfig::parse(&wallet, Path::new("/etc/attesta")).unwrap();
        let bt = c.bittensor.unwrap();
        assert_eq!(
            bt.wallet_path.as_deref(),
            Some(Path::new("/etc/attesta/wallets"))
        );
        assert!(
            matches!(bt.hotkey(), Err(ConfigError::Wallet(_))),
            "no such keyfile"
        );
        let typo = format!("{MIN}\n[validator.bittensor]\nhotkey = \"x\"\n");
        assert!(matches!(
            ValidatorConfig::parse(&typo, Path::new(".")),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(
            ValidatorConfig::parse(MIN, Path::new("."))
                .unwrap()
                .bittensor
                .is_none()
        );
    }

    #[test]
    fn chain_weights_settings() {
        use attesta_bittensor::chain::weights::CommitReveal;
        let text = format!(
            "{MIN}\n[validator.bittensor]\nhotkey_uri = \"//Bob\"\nendpoint = \"ws://127.0.0.1:9944\"\n\
             netuid = 3\ncommit_reveal = \"on\"\nversion_key = 7\nblock_time_ms = 250\n"
        );
        let c = ValidatorConfig::parse(&text, Path::new(".")).unwrap();
        let bt = c.bittensor.clone().unwrap();
        assert_eq!(bt.commit_reveal, Some(CommitReveal::On));
        assert_eq!((bt.version_key, bt.block_time_ms), (Some(7), Some(250)));
        // Rendered back and parsed again, the same.
        let again = ValidatorConfig::parse(&c.to_toml().unwrap(), Path::new(".")).unwrap();
        assert_eq!(again.bittensor, c.bittensor);
        for (v, want) in [("auto", CommitReveal::Auto), ("off", CommitReveal::Off)] {
            let t = text.replace("\"on\"", &format!("\"{v}\""));
            let c = ValidatorConfig::parse(&t, Path::new(".")).unwrap();
            assert_eq!(c.bittensor.unwrap().commit_reveal, Some(want));
        }
        let bad = text.replace("\"on\"", "\"maybe\"");
        assert!(matches!(
            ValidatorConfig::parse(&bad, Path::new(".")),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn rejects_bad_values() {
        let bad = format!("{MIN}\n[validator.rounds]\nconcurrency = 0\n");
        assert!(matches!(
            ValidatorConfig::parse(&bad, Path::new(".")),
            Err(ConfigError::Invalid(_))
        ));
        let bad = MIN.replace(
            "[[validator.challenges.models]]\ncid = \"bafkreia\"\n",
            "models = []\n",
        );
        assert!(matches!(
            ValidatorConfig::parse(&bad, Path::new(".")),
            Err(ConfigError::Invalid(_))
        ));
        let bad = format!("{MIN}\n[validator.scoring]\nalpha = 0.0\n");
        assert!(matches!(
            ValidatorConfig::parse(&bad, Path::new(".")),
            Err(ConfigError::Invalid(_))
        ));
        let typo = MIN.replace("nodes = ", "listen_addr = \"x\"\nnodes = ");
        assert!(matches!(
            ValidatorConfig::parse(&typo, Path::new(".")),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn declared_faults_are_refused_unless_configured_with_a_dev_root() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        std::fs::write(&exe, b"pretend executable").unwrap();
        let mut opts = attesta_attester::dev::DevOptions::new(dir.path()).unwrap();
        opts.executable = exe;
        let dev = attesta_attester::dev::DevAttester::open(opts).unwrap();
        std::fs::write(dir.path().join("root.pem"), dev.root_pem()).unwrap();
        let c = ValidatorConfig::parse(MIN, dir.path()).unwrap();
        assert!(!c.policy().unwrap().accepts_declared_faults());
        let text = format!(
            "{MIN}\n[validator.policy]\ndev_root = \"root.pem\"\naccept_declared_faults = true\n"
        );
        let c = ValidatorConfig::parse(&text, dir.path()).unwrap();
        assert!(c.policy().unwrap().accepts_declared_faults());
        // Rendered and parsed back, the option survives.
        let again = ValidatorConfig::parse(&c.to_toml().unwrap(), dir.path()).unwrap();
        assert!(again.policy.accept_declared_faults);
        // Without a dev root it would be meaningless: refused.
        let text = format!("{MIN}\n[validator.policy]\naccept_declared_faults = true\n");
        assert!(matches!(
            ValidatorConfig::parse(&text, dir.path()),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn snp_dev_root_is_accepted_only_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let c = ValidatorConfig::parse(MIN, dir.path()).unwrap();
        assert!(c.policy().unwrap().snp_dev_root().is_none());
        // A real SEV-SNP ARK stands in for a dev ARK: any certificate parses.
        let ark = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../evidence/src/roots/amd/milan_ark.pem"),
        )
        .unwrap();
        std::fs::write(dir.path().join("ark.pem"), ark).unwrap();
        let text = format!("{MIN}\n[validator.policy]\nsnp_dev_root = \"ark.pem\"\n");
        let c = ValidatorConfig::parse(&text, dir.path()).unwrap();
        assert!(c.policy().unwrap().snp_dev_root().is_some());
        std::fs::write(dir.path().join("ark.pem"), "not a pem").unwrap();
        assert!(matches!(c.policy(), Err(ConfigError::Root(_))));
    }

    #[test]
    fn dcap_dev_root_is_accepted_only_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let c = ValidatorConfig::parse(MIN, dir.path()).unwrap();
        assert!(c.policy().unwrap().dcap_dev_root().is_none());
        let signer = attesta_attester::dcap_dev::DcapDevSigner::generate(
            &attesta_attester::dev::SystemEntropy::default(),
            attesta_evidence::UnixTime::from_secs(1_700_000_000),
        )
        .unwrap();
        std::fs::write(dir.path().join("dcap.pem"), signer.root_pem()).unwrap();
        let text = format!("{MIN}\n[validator.policy]\ndcap_dev_root = \"dcap.pem\"\n");
        let c = ValidatorConfig::parse(&text, dir.path()).unwrap();
        let policy = c.policy().unwrap();
        let root = policy.dcap_dev_root().unwrap();
        assert_eq!(root.der(), signer.root_der());
        let again = ValidatorConfig::parse(&c.to_toml().unwrap(), dir.path()).unwrap();
        assert!(again.policy.dcap_dev_root.is_some());
        std::fs::write(dir.path().join("dcap.pem"), "not a pem").unwrap();
        assert!(matches!(c.policy(), Err(ConfigError::Root(_))));
    }

    #[test]
    fn dev_root_must_be_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), "not a pem").unwrap();
        let text = format!("{MIN}\n[validator.policy]\ndev_root = \"root.pem\"\n");
        let c = ValidatorConfig::parse(&text, dir.path()).unwrap();
        assert!(matches!(c.policy(), Err(ConfigError::Root(_))));
    }

    #[test]
    fn the_measurements_file_applies_whole() {
        // A VMPL requirement or a max age written in the policy file must bind the
        // validator exactly as it binds `attesta verify` and `attesta infer`.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("releases.toml"),
            concat!(
                "max_age_secs = 42\nsnp_vmpl = 1\n",
                "[[releases]]\nname = \"v1\"\n[releases.pcrs]\n0 = \"",
                "000000000000000000000000000000000000000000000000",
                "000000000000000000000000000000000000000000000000\"\n"
            ),
        )
        .unwrap();
        let text = format!("{MIN}\n[validator.policy]\nmeasurements = \"releases.toml\"\n");
        let policy = ValidatorConfig::parse(&text, dir.path())
            .unwrap()
            .policy()
            .unwrap();
        assert_eq!(policy.snp_vmpl(), Some(1));
        assert_eq!(policy.max_age(), Duration::from_secs(42));
        assert!(!policy.allows_debug());
    }
}
