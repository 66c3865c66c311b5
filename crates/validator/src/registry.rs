//! Where the set of nodes to validate comes from: a static file, a fixed list, or the
//! Bittensor metagraph ([`crate::metagraph::Metagraph`]).

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

/// One node to validate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Stable identifier (the key of scores and weights).
    pub id: String,
    /// Base URL of the node's HTTP API, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The node's Bittensor hotkey, when known (SS58); required with `via = "axon"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
    /// How the node is reached: its `/v1` API at `url` (`http`, the default) or its
    /// Bittensor axon at `url` (`axon`), signed by the validator's hotkey.
    #[serde(default, skip_serializing_if = "Via::is_http")]
    pub via: Via,
}

/// The path to a node.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Direct HTTP to the node's `/v1` API.
    #[default]
    Http,
    /// The SDK's axon wire format (`attesta axon` in front of the node).
    Axon,
}

impl Via {
    /// True for the default, direct HTTP.
    pub fn is_http(&self) -> bool {
        *self == Via::Http
    }
}

/// Why the node list could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be read.
    #[error("reading node list {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Neither a JSON nor a TOML node list.
    #[error("node list {path}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser messages.
        reason: String,
    },
    /// Two entries share an id, or an entry is empty.
    #[error("node list {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The chain's metagraph could not be read (the round is retried).
    #[error("metagraph of netuid {netuid} at {endpoint}: {source}")]
    Chain {
        /// The chain endpoint.
        endpoint: String,
        /// The subnet.
        netuid: u16,
        /// The cause.
        #[source]
        source: attesta_bittensor::chain::ChainError,
    },
}

/// A source of nodes, asked once per round so membership can change.
pub trait NodeSource: Send + Sync {
    /// The current nodes, sorted by id, ids unique.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeEntry>, RegistryError>>;
}

/// A TOML (`[[nodes]]`) or JSON (list, or `{"nodes": [...]}`) file of
/// `{id, url, hotkey?}`, re-read every round.
#[derive(Debug, Clone)]
pub struct StaticFile {
    path: PathBuf,
}

impl StaticFile {
    /// A source backed by this file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StaticFile { path: path.into() }
    }

    /// Reads and validates the file now.
    pub fn load(&self) -> Result<Vec<NodeEntry>, RegistryError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| RegistryError::Io {
            path: self.path.clone(),
            source,
        })?;
        parse_nodes(&text, &self.path)
    }
}

impl NodeSource for StaticFile {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeEntry>, RegistryError>> {
        Box::pin(async move { self.load() })
    }
}

/// A fixed in-memory list (tests, the devnet, the benchmark).
#[derive(Debug, Clone)]
pub struct FixedNodes(pub Vec<NodeEntry>);

impl NodeSource for FixedNodes {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeEntry>, RegistryError>> {
        let mut v = self.0.clone();
        v.sort();
        Box::pin(async move { Ok(v) })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    nodes: Vec<NodeEntry>,
}

/// Parses a node list (JSON list, JSON `{"nodes": […]}` or TOML `[[nodes]]`).
pub fn parse_nodes(text: &str, path: &Path) -> Result<Vec<NodeEntry>, RegistryError> {
    let mut nodes = match serde_json::from_str::<Vec<NodeEntry>>(text) {
        Ok(v) => v,
        Err(je) => match serde_json::from_str::<Wrapped>(text) {
            Ok(w) => w.nodes,
            Err(_) => match toml::from_str::<Wrapped>(text) {
                Ok(w) => w.nodes,
                Err(te) => {
                    return Err(RegistryError::Syntax {
                        path: path.to_path_buf(),
                        reason: format!("JSON: {je}; TOML: {te}"),
                    });
                }
            },
        },
    };
    nodes.sort();
    let invalid = |reason: String| RegistryError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    for n in &nodes {
        if n.id.trim().is_empty() {
            return Err(invalid("a node has an empty id".into()));
        }
        if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
            return Err(invalid(format!("node `{}`: url must be http(s)://", n.id)));
        }
        if n.via == Via::Axon {
            let hotkey = n.hotkey.as_deref().unwrap_or_default();
            attesta_bittensor::AccountId::from_ss58(hotkey).map_err(|e| {
                invalid(format!(
                    "node `{}`: via = \"axon\" needs the axon's hotkey (SS58): {e}",
                    n.id
                ))
            })?;
        }
    }
    for pair in nodes.windows(2) {
        if let [a, b] = pair
            && a.id == b.id
        {
            return Err(invalid(format!("duplicate node id `{}`", a.id)));
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("nodes")
    }

    #[test]
    fn parses_the_three_shapes() {
        let json = r#"[{"id":"b","url":"http://127.0.0.1:2"},{"id":"a","url":"http://127.0.0.1:1","hotkey":"5F"}]"#;
        let v = parse_nodes(json, p()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "a", "sorted by id");
        assert_eq!(v[0].hotkey.as_deref(), Some("5F"));
        let wrapped = r#"{"nodes":[{"id":"a","url":"http://x"}]}"#;
        assert_eq!(parse_nodes(wrapped, p()).unwrap().len(), 1);
        let toml = "[[nodes]]\nid = \"a\"\nurl = \"http://x\"\n[[nodes]]\nid = \"b\"\nurl = \"https://y\"\n";
        assert_eq!(parse_nodes(toml, p()).unwrap().len(), 2);
    }

    #[test]
    fn rejects_bad_lists() {
        let dup = r#"[{"id":"a","url":"http://x"},{"id":"a","url":"http://y"}]"#;
        assert!(matches!(
            parse_nodes(dup, p()),
            Err(RegistryError::Invalid { .. })
        ));
        let scheme = r#"[{"id":"a","url":"ftp://x"}]"#;
        assert!(matches!(
            parse_nodes(scheme, p()),
            Err(RegistryError::Invalid { .. })
        ));
        let empty = r#"[{"id":" ","url":"http://x"}]"#;
        assert!(matches!(
            parse_nodes(empty, p()),
            Err(RegistryError::Invalid { .. })
        ));
        let axon_without_hotkey = r#"[{"id":"a","url":"http://x","via":"axon"}]"#;
        assert!(matches!(
            parse_nodes(axon_without_hotkey, p()),
            Err(RegistryError::Invalid { .. })
        ));
        let axon = r#"[{"id":"a","url":"http://x","via":"axon","hotkey":"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}]"#;
        assert_eq!(parse_nodes(axon, p()).unwrap()[0].via, Via::Axon);
        let unknown = r#"[{"id":"a","url":"http://x","port":1}]"#;
        assert!(matches!(
            parse_nodes(unknown, p()),
            Err(RegistryError::Syntax { .. })
        ));
        assert!(matches!(
            parse_nodes("not a list", p()),
            Err(RegistryError::Syntax { .. })
        ));
    }
}
