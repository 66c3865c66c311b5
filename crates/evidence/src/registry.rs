//! The measurement registry: which PCR values are acceptable, read from the
//! formats people already have.
//!
//! Accepted inputs (auto-detected):
//! - `nitro-cli describe-enclaves` output: a JSON list of objects with
//!   `"Measurements": {"HashAlgorithm": …, "PCR0": "hex", …}` (OpenGradient's
//!   `measurements.txt`);
//! - a bare `{"Measurements": {...}}` object (`nitro-cli build-enclave`);
//! - our own TOML or JSON: `releases = [{name, pcrs = {0 = "hex", …}}]`, plus
//!   optional policy keys `allow_debug`, `max_age_secs`, `dev_root`.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;

/// One acceptable set of measurements: every listed PCR must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    /// Name shown in reports.
    pub name: String,
    /// PCR index → expected value.
    #[serde(serialize_with = "ser_pcrs")]
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

fn ser_pcrs<S: serde::Serializer>(pcrs: &BTreeMap<u8, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(pcrs.len()))?;
    for (k, v) in pcrs {
        m.serialize_entry(&k.to_string(), &hex::encode(v))?;
    }
    m.end()
}

impl Release {
    /// This release as a TOML `[[releases]]` entry (what `attesta measure` prints).
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[[releases]]\nname = {:?}\n[releases.pcrs]", self.name);
        for (i, v) in &self.pcrs {
            let _ = writeln!(s, "{i} = \"{}\"", hex::encode(v));
        }
        s
    }
}

/// A PCR that differs from a release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PcrDiff {
    /// PCR index.
    pub index: u8,
    /// Expected value, hex.
    pub expected: String,
    /// Value in the document, hex (`None` when the document lacks the PCR).
    pub got: Option<String>,
}

/// The outcome of matching a document's PCRs against the registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum MeasurementMatch {
    /// This release matched on all its PCRs.
    Matched {
        /// Release name.
        release: String,
    },
    /// No release matched; the differences per release.
    Mismatch {
        /// Release name → differing PCRs.
        releases: Vec<(String, Vec<PcrDiff>)>,
    },
}

impl std::fmt::Display for MeasurementMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeasurementMatch::Matched { release } => write!(f, "matches release `{release}`"),
            MeasurementMatch::Mismatch { releases } => {
                for (n, (name, diffs)) in releases.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "release `{name}`:")?;
                    for d in diffs {
                        write!(
                            f,
                            " PCR{} expected {} got {}",
                            d.index,
                            d.expected,
                            d.got.as_deref().unwrap_or("(absent)")
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Acceptable measurement sets; a document passes if any release matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Registry {
    releases: Vec<Release>,
}

/// Why a registry file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Neither JSON nor TOML.
    #[error("registry is neither valid JSON nor TOML: {0}")]
    Syntax(String),
    /// Parsed, but not one of the known shapes.
    #[error("unrecognised registry layout: {0}")]
    Layout(String),
    /// A PCR entry is wrong.
    #[error("release `{release}`: {reason}")]
    Pcr {
        /// Release name.
        release: String,
        /// What is wrong.
        reason: String,
    },
    /// No release defines any PCR.
    #[error("registry defines no measurements")]
    Empty,
}

/// A registry plus the optional policy settings our own file format carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// The measurements.
    pub registry: Registry,
    /// `allow_debug = true` in the file.
    pub allow_debug: Option<bool>,
    /// `max_age_secs` in the file.
    pub max_age_secs: Option<u64>,
    /// `dev_root`: path of a dev root PEM, relative to the file (the caller reads it).
    pub dev_root: Option<String>,
    /// Releases with `platform = "intel-sgx"` / `"intel-tdx"` (see [`crate::dcap::DcapRegistry`]).
    pub dcap: crate::dcap::DcapRegistry,
}

impl Registry {
    /// A registry with these releases.
    pub fn new(releases: Vec<Release>) -> Self {
        Registry { releases }
    }

    /// Parses any supported registry text (see the module docs).
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        PolicyFile::parse(text).map(|p| p.registry)
    }

    /// The releases.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// `true` when nothing is required (the measurement step is skipped).
    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }

    /// Matches a document's PCRs: the first release whose listed PCRs all equal.
    pub fn check(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> MeasurementMatch {
        let mut misses = Vec::new();
        for r in &self.releases {
            let diffs: Vec<PcrDiff> = r
                .pcrs
                .iter()
                .filter(|(i, v)| pcrs.get(i) != Some(v))
                .map(|(i, v)| PcrDiff {
                    index: *i,
                    expected: hex::encode(v),
                    got: pcrs.get(i).map(hex::encode),
                })
                .collect();
            if diffs.is_empty() {
                return MeasurementMatch::Matched {
                    release: r.name.clone(),
                };
            }
            misses.push((r.name.clone(), diffs));
        }
        MeasurementMatch::Mismatch { releases: misses }
    }
}

impl PolicyFile {
    /// Applies the file to `base`: its measurements, max age and (an
    /// explicit relaxation) `allow_debug`. The dev root path is left to the
    /// caller, which reads the file and calls [`crate::danger::accept_dev_root`].
    pub fn apply(&self, base: crate::Policy) -> crate::Policy {
        let mut p = base.with_measurements(self.registry.clone());
        if let Some(secs) = self.max_age_secs {
            p = p.with_max_age(std::time::Duration::from_secs(secs));
        }
        if self.allow_debug == Some(true) {
            p = crate::danger::allow_debug(p);
        }
        p
    }

    /// Parses a registry / policy file (JSON or TOML, detected).
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let trimmed = text.trim_start();
        // `[[releases]]` starts like a JSON list, so JSON is tried first and
        // TOML second; the error reported is the one of the likelier syntax.
        let looks_json =
            trimmed.starts_with('{') || (trimmed.starts_with('[') && !trimmed.starts_with("[["));
        let json: Json = match serde_json::from_str(text) {
            Ok(j) => j,
            Err(je) => match toml::from_str(text) {
                Ok(t) => t,
                Err(te) if looks_json => {
                    return Err(RegistryError::Syntax(format!("JSON: {je} (TOML: {te})")));
                }
                Err(te) => return Err(RegistryError::Syntax(format!("TOML: {te} (JSON: {je})"))),
            },
        };
        let mut out = PolicyFile::default();
        let releases = match &json {
            Json::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let name = item
                        .get("EnclaveName")
                        .and_then(Json::as_str)
                        .map_or_else(|| format!("enclave-{i}"), str::to_owned);
                    let m = item.get("Measurements").ok_or_else(|| {
                        RegistryError::Layout(format!("list item {i} has no \"Measurements\""))
                    })?;
                    measurements(&name, m)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Json::Object(obj) => {
                if let Some(m) = obj.get("Measurements") {
                    vec![measurements("measurements", m)?]
                } else if let Some(rs) = obj.get("releases") {
                    out.allow_debug = obj.get("allow_debug").and_then(Json::as_bool);
                    out.max_age_secs = obj.get("max_age_secs").and_then(Json::as_u64);
                    out.dev_root = obj
                        .get("dev_root")
                        .and_then(Json::as_str)
                        .map(str::to_owned);
                    let Json::Array(rs) = rs else {
                        return Err(RegistryError::Layout("`releases` must be a list".into()));
                    };
                    let mut nitro = Vec::new();
                    let mut dcap = Vec::new();
                    for (i, r) in rs.iter().enumerate() {
                        match dcap_release(i, r)? {
                            Some(d) => dcap.push(d),
                            None => nitro.push(own_release(i, r)?),
                        }
                    }
                    if nitro.is_empty() && !dcap.is_empty() {
                        out.dcap = crate::dcap::DcapRegistry::new(dcap);
                        return Ok(out);
                    }
                    out.dcap = crate::dcap::DcapRegistry::new(dcap);
                    nitro
                } else {
                    return Err(RegistryError::Layout(
                        "expected \"Measurements\" or `releases`".into(),
                    ));
                }
            }
            _ => return Err(RegistryError::Layout("expected a list or an object".into())),
        };
        if releases.is_empty() || releases.iter().any(|r| r.pcrs.is_empty()) {
            return Err(RegistryError::Empty);
        }
        out.registry = Registry { releases };
        Ok(out)
    }
}

fn measurements(name: &str, m: &Json) -> Result<Release, RegistryError> {
    let Json::Object(obj) = m else {
        return Err(RegistryError::Layout(
            "\"Measurements\" must be an object".into(),
        ));
    };
    if let Some(alg) = obj.get("HashAlgorithm").and_then(Json::as_str)
        && !alg.to_ascii_lowercase().contains("sha384")
    {
        return Err(RegistryError::Pcr {
            release: name.to_owned(),
            reason: format!("hash algorithm {alg} is not SHA384"),
        });
    }
    let mut pcrs = BTreeMap::new();
    for (k, v) in obj {
        if let Some(idx) = k.strip_prefix("PCR") {
            let (i, val) = pcr_entry(name, idx, v)?;
            pcrs.insert(i, val);
        }
    }
    Ok(Release {
        name: name.to_owned(),
        pcrs,
    })
}

/// A release for an Intel platform (`platform = "intel-sgx"` / `"intel-tdx"`), if it is one.
fn dcap_release(i: usize, r: &Json) -> Result<Option<crate::dcap::DcapRelease>, RegistryError> {
    use crate::dcap::TeeType;
    let tee = match r.get("platform").and_then(Json::as_str) {
        Some("intel-sgx") => TeeType::Sgx,
        Some("intel-tdx") => TeeType::Tdx,
        _ => return Ok(None),
    };
    let name = r
        .get("name")
        .and_then(Json::as_str)
        .map_or_else(|| format!("release-{i}"), str::to_owned);
    crate::dcap::DcapRelease::from_json(name, tee, r).map(Some)
}

fn own_release(i: usize, r: &Json) -> Result<Release, RegistryError> {
    let name = r
        .get("name")
        .and_then(Json::as_str)
        .map_or_else(|| format!("release-{i}"), str::to_owned);
    let Some(Json::Object(p)) = r.get("pcrs") else {
        return Err(RegistryError::Layout(format!(
            "release `{name}` has no `pcrs` table"
        )));
    };
    let mut pcrs = BTreeMap::new();
    for (k, v) in p {
        let idx = k.strip_prefix("PCR").unwrap_or(k);
        let (i, val) = pcr_entry(&name, idx, v)?;
        pcrs.insert(i, val);
    }
    Ok(Release { name, pcrs })
}

fn pcr_entry(release: &str, idx: &str, v: &Json) -> Result<(u8, Vec<u8>), RegistryError> {
    let err = |reason: String| RegistryError::Pcr {
        release: release.to_owned(),
        reason,
    };
    let i: u8 = idx
        .parse()
        .ok()
        .filter(|i| *i < 32)
        .ok_or_else(|| err(format!("bad PCR index `{idx}`")))?;
    let s = v
        .as_str()
        .ok_or_else(|| err(format!("PCR{i} must be a hex string")))?;
    let val = hex::decode(s.trim()).map_err(|e| err(format!("PCR{i}: {e}")))?;
    if !matches!(val.len(), 32 | 48 | 64) {
        return Err(err(format!(
            "PCR{i} has {} bytes (32, 48 or 64 expected)",
            val.len()
        )));
    }
    Ok((i, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn doc(p0: &str, p1: &str) -> BTreeMap<u8, Vec<u8>> {
        BTreeMap::from([
            (0, hex::decode(p0).unwrap_or_default()),
            (1, hex::decode(p1).unwrap_or_default()),
        ])
    }

    #[test]
    fn parses_every_layout() {
        let describe = format!(
            r#"[{{"EnclaveName":"og","EnclaveID":"i-1","Measurements":{{"HashAlgorithm":"Sha384 {{ ... }}","PCR0":"{A}","PCR1":"{B}"}}}}]"#
        );
        let bare = format!(
            r#"{{"Measurements":{{"HashAlgorithm":"Sha384 {{ ... }}","PCR0":"{A}","PCR1":"{B}"}}}}"#
        );
        let toml = format!(
            "allow_debug = true\n[[releases]]\nname = \"v1\"\n[releases.pcrs]\n0 = \"{A}\"\n1 = \"{B}\"\n"
        );
        let json = format!(r#"{{"releases":[{{"name":"v1","pcrs":{{"0":"{A}","PCR1":"{B}"}}}}]}}"#);
        for text in [describe, bare, toml.clone(), json] {
            let r = Registry::parse(&text);
            assert!(
                matches!(
                    r.as_ref().map(|r| r.check(&doc(A, B))),
                    Ok(MeasurementMatch::Matched { .. })
                ),
                "{text}: {r:?}"
            );
            let miss = r.map(|r| r.check(&doc(A, A)));
            assert!(
                matches!(&miss, Ok(MeasurementMatch::Mismatch { releases }) if matches!(releases.as_slice(), [(_, d)] if matches!(d.as_slice(), [PcrDiff { index: 1, .. }]))),
                "{miss:?}"
            );
        }
        assert_eq!(
            PolicyFile::parse(&toml).map(|p| p.allow_debug),
            Ok(Some(true))
        );
    }

    #[test]
    fn measure_output_parses_back() {
        let rel = Release {
            name: "dev".into(),
            pcrs: doc(A, B),
        };
        assert_eq!(
            Registry::parse(&rel.to_toml()),
            Ok(Registry::new(vec![rel]))
        );
    }

    #[test]
    fn rejects_bad_registries() {
        assert!(matches!(
            Registry::parse("{"),
            Err(RegistryError::Syntax(_))
        ));
        assert!(matches!(Registry::parse("[]"), Err(RegistryError::Empty)));
        assert!(matches!(
            Registry::parse(r#"{"x":1}"#),
            Err(RegistryError::Layout(_))
        ));
        assert!(matches!(
            Registry::parse(r#"{"Measurements":{"PCR0":"abcd"}}"#),
            Err(RegistryError::Pcr { .. })
        ));
        assert!(matches!(
            Registry::parse(&format!(r#"{{"Measurements":{{"PCR99":"{A}"}}}}"#)),
            Err(RegistryError::Pcr { .. })
        ));
        assert!(matches!(
            Registry::parse(&format!(
                r#"{{"Measurements":{{"HashAlgorithm":"Sha256","PCR0":"{A}"}}}}"#
            )),
            Err(RegistryError::Pcr { .. })
        ));
    }
}
