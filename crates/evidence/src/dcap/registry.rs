//! Measurements of SGX enclaves and TDX trust domains a policy accepts.
//!
//! In the releases file, a release with `platform = "sgx"` or `"tdx"`
//! (or `"dev-sgx"` / `"dev-tdx"`) lists named values instead of PCRs:
//! `[releases.measurements]` with `mrenclave`, `mrsigner`, `isvprodid`,
//! `isvsvn` (minimum) for SGX; `mrtd`, `rtmr0`..`rtmr3`, `mrconfigid`,
//! `mrowner`, `mrownerconfig` for TDX. Every listed value must match.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::quote::{Body, TeeType};
use crate::registry::RegistryError;

/// One accepted enclave / TD: every listed value must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DcapRelease {
    /// Name shown in reports.
    pub name: String,
    /// SGX or TDX.
    pub tee: TeeType,
    /// Byte-string measurements by name (`mrenclave`, `mrtd`, `rtmr0`, ...).
    #[serde(serialize_with = "ser_hex")]
    pub values: BTreeMap<String, Vec<u8>>,
    /// SGX ISVPRODID, exact.
    pub isv_prod_id: Option<u16>,
    /// SGX ISVSVN, minimum.
    pub min_isv_svn: Option<u16>,
}

fn ser_hex<S: serde::Serializer>(v: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, hex::encode(v))))
}

/// SGX byte measurements and their sizes.
const SGX_FIELDS: [(&str, usize); 2] = [("mrenclave", 32), ("mrsigner", 32)];
/// TDX byte measurements and their sizes.
const TDX_FIELDS: [(&str, usize); 8] = [
    ("mrtd", 48),
    ("rtmr0", 48),
    ("rtmr1", 48),
    ("rtmr2", 48),
    ("rtmr3", 48),
    ("mrconfigid", 48),
    ("mrowner", 48),
    ("mrownerconfig", 48),
];

/// The values of a body by measurement name.
pub fn measurements_of(body: &Body) -> BTreeMap<&'static str, Vec<u8>> {
    match body {
        Body::Sgx(r) => BTreeMap::from([
            ("mrenclave", r.mr_enclave.to_vec()),
            ("mrsigner", r.mr_signer.to_vec()),
        ]),
        Body::Td(r) => {
            let [r0, r1, r2, r3] = &r.rtmr;
            BTreeMap::from([
                ("mrtd", r.mr_td.to_vec()),
                ("rtmr0", r0.to_vec()),
                ("rtmr1", r1.to_vec()),
                ("rtmr2", r2.to_vec()),
                ("rtmr3", r3.to_vec()),
                ("mrconfigid", r.mr_config_id.to_vec()),
                ("mrowner", r.mr_owner.to_vec()),
                ("mrownerconfig", r.mr_owner_config.to_vec()),
            ])
        }
    }
}

impl DcapRelease {
    /// The differences between this release and a body (empty: it matches).
    pub fn diffs(&self, body: &Body) -> Vec<String> {
        let have = measurements_of(body);
        let mut out = Vec::new();
        let tee = match body {
            Body::Sgx(_) => TeeType::Sgx,
            Body::Td(_) => TeeType::Tdx,
        };
        if tee != self.tee {
            out.push(format!("platform {:?} expected {:?}", tee, self.tee));
            return out;
        }
        for (k, want) in &self.values {
            let got = have.get(k.as_str());
            if got != Some(want) {
                out.push(format!(
                    "{k} expected {} got {}",
                    hex::encode(want),
                    got.map_or_else(|| "(absent)".into(), hex::encode)
                ));
            }
        }
        if let Body::Sgx(r) = body {
            if let Some(p) = self.isv_prod_id.filter(|p| *p != r.isv_prod_id) {
                out.push(format!("isvprodid expected {p} got {}", r.isv_prod_id));
            }
            if let Some(s) = self.min_isv_svn.filter(|s| r.isv_svn < *s) {
                out.push(format!("isvsvn expected >= {s} got {}", r.isv_svn));
            }
        }
        out
    }

    /// Parses one `[[releases]]` entry whose `platform` is `sgx` / `tdx` (or their dev variants).
    pub(crate) fn from_json(name: String, tee: TeeType, r: &Json) -> Result<Self, RegistryError> {
        let err = |reason: String| RegistryError::Pcr {
            release: name.clone(),
            reason,
        };
        let Some(Json::Object(m)) = r.get("measurements") else {
            return Err(RegistryError::Layout(format!(
                "release `{name}` has no `measurements` table"
            )));
        };
        let fields: &[(&str, usize)] = match tee {
            TeeType::Sgx => &SGX_FIELDS,
            TeeType::Tdx => &TDX_FIELDS,
        };
        let mut rel = DcapRelease {
            name: name.clone(),
            tee,
            values: BTreeMap::new(),
            isv_prod_id: None,
            min_isv_svn: None,
        };
        for (k, v) in m {
            let key = k.to_ascii_lowercase();
            let num = || {
                v.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| err(format!("{k} must be an integer 0..65535")))
            };
            match (tee, key.as_str()) {
                (TeeType::Sgx, "isvprodid") => rel.isv_prod_id = Some(num()?),
                (TeeType::Sgx, "isvsvn") => rel.min_isv_svn = Some(num()?),
                _ => {
                    let size = fields
                        .iter()
                        .find(|(f, _)| *f == key)
                        .map(|(_, n)| *n)
                        .ok_or_else(|| err(format!("unknown measurement `{k}` for {tee:?}")))?;
                    let bytes = v
                        .as_str()
                        .and_then(|s| hex::decode(s.trim()).ok())
                        .filter(|b| b.len() == size)
                        .ok_or_else(|| err(format!("{k} must be {size} bytes of hex")))?;
                    rel.values.insert(key, bytes);
                }
            }
        }
        if rel.values.is_empty() && rel.isv_prod_id.is_none() && rel.min_isv_svn.is_none() {
            return Err(RegistryError::Empty);
        }
        Ok(rel)
    }

    /// This release as a TOML `[[releases]]` entry.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write as _;
        let platform = match self.tee {
            TeeType::Sgx => "sgx",
            TeeType::Tdx => "tdx",
        };
        let mut s = format!(
            "[[releases]]\nname = {:?}\nplatform = \"{platform}\"\n[releases.measurements]\n",
            self.name
        );
        for (k, v) in &self.values {
            let _ = writeln!(s, "{k} = \"{}\"", hex::encode(v));
        }
        if let Some(p) = self.isv_prod_id {
            let _ = writeln!(s, "isvprodid = {p}");
        }
        if let Some(v) = self.min_isv_svn {
            let _ = writeln!(s, "isvsvn = {v}");
        }
        s
    }
}
