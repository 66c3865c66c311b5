//! The measurement registry: which PCR values are acceptable, read from the
//! formats people already have.
//!
//! Accepted inputs (auto-detected):
//! - `nitro-cli describe-enclaves` output: a JSON list of objects with
//!   `"Measurements": {"HashAlgorithm": …, "PCR0": "hex", …}` (OpenGradient's
//!   `measurements.txt`);
//! - a bare `{"Measurements": {...}}` object (`nitro-cli build-enclave`);
//! - our own TOML or JSON: `releases = [{name, pcrs = {0 = "hex", …}}]`, plus
//!   optional policy keys `allow_debug`, `max_age_secs`, `dev_root`,
//!   `snp_vmpl`, `accept_snp_migration_agent`, `snp_dev_root`. A release
//!   with `platform = "sev-snp"` pins an SNP launch `measurement` (48 bytes
//!   hex) and optionally `host_data` (32 bytes hex) instead of PCRs.

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

/// One acceptable SEV-SNP launch: the measurement, and host_data when pinned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnpRelease {
    /// Name shown in reports.
    pub name: String,
    /// Launch measurement (SHA-384).
    #[serde(serialize_with = "ser_hex")]
    pub measurement: [u8; 48],
    /// Host data fixed at launch, if pinned.
    #[serde(serialize_with = "ser_opt_hex")]
    pub host_data: Option<[u8; 32]>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

impl SnpRelease {
    /// This release as a TOML `[[releases]]` entry.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[[releases]]\nname = {:?}\nplatform = \"sev-snp\"\nmeasurement = \"{}\"\n",
            self.name,
            hex::encode(self.measurement)
        );
        if let Some(h) = &self.host_data {
            let _ = writeln!(s, "host_data = \"{}\"", hex::encode(h));
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    snp: Vec<SnpRelease>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dcap: Vec<crate::dcap::DcapRelease>,
}

/// Why a registry file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Neither JSON nor TOML, and it looks like JSON: the JSON error is the cause.
    #[error("registry is neither valid JSON nor TOML: JSON: {json} (TOML: {toml})")]
    Syntax {
        /// The JSON parser's error (the likelier syntax).
        #[source]
        json: crate::Shared<serde_json::Error>,
        /// The TOML parser's error.
        toml: crate::Shared<toml::de::Error>,
    },
    /// Neither JSON nor TOML, and it looks like TOML: the TOML error is the cause.
    #[error("registry is neither valid JSON nor TOML: TOML: {toml} (JSON: {json})")]
    SyntaxToml {
        /// The TOML parser's error (the likelier syntax).
        #[source]
        toml: crate::Shared<toml::de::Error>,
        /// The JSON parser's error.
        json: crate::Shared<serde_json::Error>,
    },
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
    /// A measurement (PCR, SNP field) is not hex.
    #[error("release `{release}`: {field}: {source}")]
    Hex {
        /// Release name.
        release: String,
        /// The field (`PCR3`, `` `measurement` ``).
        field: String,
        /// The hex decoder's error.
        #[source]
        source: crate::Shared<hex::FromHexError>,
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
    /// `snp_dev_root`: path of a dev SEV-SNP ARK PEM, relative to the file (the caller reads it).
    pub snp_dev_root: Option<String>,
    /// `snp_vmpl`: the VMPL SEV-SNP reports must come from.
    pub snp_vmpl: Option<u32>,
    /// `accept_snp_migration_agent = true` in the file (a relaxation).
    pub accept_snp_migration_agent: Option<bool>,
}

impl Registry {
    /// A registry with these releases.
    pub fn new(releases: Vec<Release>) -> Self {
        Registry {
            releases,
            snp: Vec::new(),
            dcap: Vec::new(),
        }
    }

    /// Adds SEV-SNP releases.
    pub fn with_snp(mut self, snp: Vec<SnpRelease>) -> Self {
        self.snp.extend(snp);
        self
    }

    /// Adds Intel SGX/TDX releases.
    pub fn with_dcap(mut self, dcap: Vec<crate::dcap::DcapRelease>) -> Self {
        self.dcap.extend(dcap);
        self
    }

    /// The Intel SGX/TDX releases.
    pub fn dcap_releases(&self) -> &[crate::dcap::DcapRelease] {
        &self.dcap
    }

    /// Matches a quote body: the first SGX/TDX release that matches, or
    /// every release's differences. A registry without them matches no quote.
    pub fn check_dcap(&self, body: &crate::dcap::Body) -> Result<String, String> {
        let mut misses = Vec::new();
        for r in &self.dcap {
            let d = r.diffs(body);
            if d.is_empty() {
                return Ok(r.name.clone());
            }
            misses.push(format!("release `{}`: {}", r.name, d.join(", ")));
        }
        if misses.is_empty() {
            return Err("the registry lists no sgx/tdx release".into());
        }
        Err(misses.join("; "))
    }

    /// The SEV-SNP releases.
    pub fn snp_releases(&self) -> &[SnpRelease] {
        &self.snp
    }

    /// Matches an SNP report's measurement and host_data: the name of the
    /// first release that matches, or a description of every difference.
    /// A registry without SNP releases matches no SNP report.
    pub fn check_snp(
        &self,
        measurement: &[u8; 48],
        host_data: &[u8; 32],
    ) -> Result<String, String> {
        let mut misses = Vec::new();
        for r in &self.snp {
            let m_ok = &r.measurement == measurement;
            let h_ok = r.host_data.as_ref().is_none_or(|h| h == host_data);
            if m_ok && h_ok {
                return Ok(r.name.clone());
            }
            let mut d = format!("release `{}`:", r.name);
            if !m_ok {
                let _ = write!(
                    d,
                    " measurement expected {} got {}",
                    hex::encode(r.measurement),
                    hex::encode(measurement)
                );
            }
            if let (false, Some(h)) = (h_ok, &r.host_data) {
                let _ = write!(
                    d,
                    " host_data expected {} got {}",
                    hex::encode(h),
                    hex::encode(host_data)
                );
            }
            misses.push(d);
        }
        if misses.is_empty() {
            return Err("the registry lists no sev-snp release".into());
        }
        Err(misses.join("; "))
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
        self.releases.is_empty() && self.snp.is_empty() && self.dcap.is_empty()
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
        if let Some(vmpl) = self.snp_vmpl {
            p = p.with_snp_vmpl(vmpl);
        }
        if self.accept_snp_migration_agent == Some(true) {
            p = crate::danger::accept_snp_migration_agent(p);
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
                    return Err(RegistryError::Syntax {
                        json: je.into(),
                        toml: te.into(),
                    });
                }
                Err(te) => {
                    return Err(RegistryError::SyntaxToml {
                        toml: te.into(),
                        json: je.into(),
                    });
                }
            },
        };
        let mut out = PolicyFile::default();
        let mut snp = Vec::new();
        let mut dcap = Vec::new();
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
                    out.snp_dev_root = obj
                        .get("snp_dev_root")
                        .and_then(Json::as_str)
                        .map(str::to_owned);
                    out.snp_vmpl = match obj.get("snp_vmpl") {
                        None => None,
                        Some(v) => Some(
                            v.as_u64()
                                .filter(|v| *v <= 3)
                                .and_then(|v| u32::try_from(v).ok())
                                .ok_or_else(|| {
                                    RegistryError::Layout("`snp_vmpl` must be 0..=3".into())
                                })?,
                        ),
                    };
                    out.accept_snp_migration_agent = obj
                        .get("accept_snp_migration_agent")
                        .and_then(Json::as_bool);
                    let Json::Array(rs) = rs else {
                        return Err(RegistryError::Layout("`releases` must be a list".into()));
                    };
                    let mut nitro = Vec::new();
                    for (i, r) in rs.iter().enumerate() {
                        match r.get("platform").and_then(Json::as_str) {
                            None | Some("nitro" | "dev") => nitro.push(own_release(i, r)?),
                            Some("sev-snp" | "dev-snp") => snp.push(snp_release(i, r)?),
                            Some(p @ ("sgx" | "tdx" | "dev-sgx" | "dev-tdx")) => {
                                dcap.push(dcap_release(i, p, r)?)
                            }
                            Some(other) => {
                                return Err(RegistryError::Layout(format!(
                                    "release {i}: unknown platform `{other}` (nitro, dev, sev-snp, dev-snp, sgx, tdx, dev-sgx, dev-tdx)"
                                )));
                            }
                        }
                    }
                    nitro
                } else {
                    return Err(RegistryError::Layout(
                        "expected \"Measurements\" or `releases`".into(),
                    ));
                }
            }
            _ => return Err(RegistryError::Layout("expected a list or an object".into())),
        };
        if (releases.is_empty() && snp.is_empty() && dcap.is_empty())
            || releases.iter().any(|r| r.pcrs.is_empty())
        {
            return Err(RegistryError::Empty);
        }
        out.registry = Registry {
            releases,
            snp,
            dcap,
        };
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

/// A release for an Intel platform (`platform = "sgx"` / `"tdx"`, or their dev variants).
fn dcap_release(
    i: usize,
    platform: &str,
    r: &Json,
) -> Result<crate::dcap::DcapRelease, RegistryError> {
    use crate::dcap::TeeType;
    let tee = if platform.ends_with("sgx") {
        TeeType::Sgx
    } else {
        TeeType::Tdx
    };
    let name = r
        .get("name")
        .and_then(Json::as_str)
        .map_or_else(|| format!("release-{i}"), str::to_owned);
    crate::dcap::DcapRelease::from_json(name, tee, r)
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

fn snp_release(i: usize, r: &Json) -> Result<SnpRelease, RegistryError> {
    let name = r
        .get("name")
        .and_then(Json::as_str)
        .map_or_else(|| format!("release-{i}"), str::to_owned);
    let err = |reason: String| RegistryError::Pcr {
        release: name.clone(),
        reason,
    };
    let fixed = |key: &str, len: usize| -> Result<Option<Vec<u8>>, RegistryError> {
        let Some(v) = r.get(key) else {
            return Ok(None);
        };
        let text = v
            .as_str()
            .ok_or_else(|| err(format!("`{key}` must be a hex string")))?;
        let bytes = hex::decode(text.trim()).map_err(|e| RegistryError::Hex {
            release: name.clone(),
            field: format!("`{key}`"),
            source: e.into(),
        })?;
        if bytes.len() != len {
            return Err(err(format!(
                "`{key}` has {} bytes ({len} expected)",
                bytes.len()
            )));
        }
        Ok(Some(bytes))
    };
    let measurement = fixed("measurement", 48)?
        .and_then(|m| <[u8; 48]>::try_from(m).ok())
        .ok_or_else(|| err("an sev-snp release needs `measurement`".into()))?;
    let host_data = fixed("host_data", 32)?.and_then(|h| <[u8; 32]>::try_from(h).ok());
    Ok(SnpRelease {
        name,
        measurement,
        host_data,
    })
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
    let val = hex::decode(s.trim()).map_err(|e| RegistryError::Hex {
        release: release.to_owned(),
        field: format!("PCR{i}"),
        source: e.into(),
    })?;
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
            Err(RegistryError::Syntax { .. })
        ));
        let syntax = Registry::parse("{").err();
        assert!(
            syntax
                .as_ref()
                .and_then(std::error::Error::source)
                .is_some()
        );
        assert!(matches!(
            Registry::parse("a = "),
            Err(RegistryError::SyntaxToml { .. })
        ));
        let hex = Registry::parse(r#"{"Measurements":{"PCR0":"zz"}}"#).err();
        assert!(matches!(hex, Some(RegistryError::Hex { .. })), "{hex:?}");
        assert!(hex.as_ref().and_then(std::error::Error::source).is_some());
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
