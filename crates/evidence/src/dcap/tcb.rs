//! Intel's TCB info (v3, SGX and TDX) and QE identity (v2): typed parsing
//! of the signed JSON and the matching algorithms.

use std::str::FromStr;

use serde::Deserialize;

use crate::time::UnixTime;

/// A TCB status as Intel's collateral names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software hardening (e.g. LVI mitigations) is needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Missing TCB recovery.
    OutOfDate,
    /// Missing TCB recovery and configuration changes.
    OutOfDateConfigurationNeeded,
    /// The TCB is revoked: never accepted.
    Revoked,
}

impl TcbStatus {
    /// Every status, for help texts.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// Intel's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown TCB status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown TCB status `{0}` (one of UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked)"
)]
pub struct UnknownTcbStatus(pub String);

impl FromStr for TcbStatus {
    type Err = UnknownTcbStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TcbStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTcbStatus(s.to_owned()))
    }
}

/// Why a TCB info or QE identity text was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcbInfoError {
    /// Not the JSON shape Intel publishes.
    #[error("{what} is not valid JSON of the expected shape")]
    Json {
        /// `tcb_info` or `qe_identity`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A field has a bad value.
    #[error("{what}: field `{field}` is invalid")]
    Field {
        /// `tcb_info` or `qe_identity`.
        what: &'static str,
        /// Field.
        field: &'static str,
    },
    /// A status we do not know.
    #[error("{what}: {source}")]
    Status {
        /// `tcb_info` or `qe_identity`.
        what: &'static str,
        /// The unknown status.
        #[source]
        source: UnknownTcbStatus,
    },
}

/// TDX module identity: signer and attributes under a mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxModule {
    /// Module id (`TDX_01`...), empty for the legacy `tdxModule` entry.
    pub id: String,
    /// Expected MRSIGNERSEAM.
    pub mrsigner: [u8; 48],
    /// Expected SEAMATTRIBUTES (under the mask).
    pub attributes: [u8; 8],
    /// Mask applied to SEAMATTRIBUTES.
    pub attributes_mask: [u8; 8],
    /// Levels by the module's ISVSVN (`tee_tcb_svn[0]`).
    pub tcb_levels: Vec<SvnLevel>,
}

/// A TCB level keyed by one ISVSVN (QE identity, TDX module identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvnLevel {
    /// Minimum ISVSVN.
    pub isvsvn: u16,
    /// Date of the level.
    pub tcb_date: String,
    /// Status.
    pub status: TcbStatus,
    /// Advisory ids.
    pub advisory_ids: Vec<String>,
}

/// One platform TCB level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    /// Minimum SGX component SVNs.
    pub sgx_components: [u8; 16],
    /// Minimum PCE SVN.
    pub pce_svn: u16,
    /// Minimum TDX component SVNs (TDX TCB info only).
    pub tdx_components: Option<[u8; 16]>,
    /// Date of the level.
    pub tcb_date: String,
    /// Status.
    pub status: TcbStatus,
    /// Advisory ids.
    pub advisory_ids: Vec<String>,
}

/// A TCB info v3 (`id` SGX or TDX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    /// `SGX` or `TDX`.
    pub id: String,
    /// Format version (3).
    pub version: u32,
    /// issueDate.
    pub issue_date: UnixTime,
    /// nextUpdate.
    pub next_update: UnixTime,
    /// FMSPC the levels apply to.
    pub fmspc: [u8; 6],
    /// PCE id.
    pub pce_id: [u8; 2],
    /// Evaluation data number.
    pub tcb_evaluation_data_number: u32,
    /// Legacy single TDX module identity (for module major version 0).
    pub tdx_module: Option<TdxModule>,
    /// TDX module identities by id.
    pub tdx_module_identities: Vec<TdxModule>,
    /// Levels, highest first.
    pub tcb_levels: Vec<TcbLevel>,
}

/// A QE identity v2 (`id` QE or TD_QE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    /// `QE` (SGX) or `TD_QE` (TDX).
    pub id: String,
    /// Format version (2).
    pub version: u32,
    /// issueDate.
    pub issue_date: UnixTime,
    /// nextUpdate.
    pub next_update: UnixTime,
    /// MISCSELECT (as the number Intel prints).
    pub miscselect: u32,
    /// Mask for MISCSELECT.
    pub miscselect_mask: u32,
    /// ATTRIBUTES.
    pub attributes: [u8; 16],
    /// Mask for ATTRIBUTES.
    pub attributes_mask: [u8; 16],
    /// MRSIGNER of the QE.
    pub mrsigner: [u8; 32],
    /// ISVPRODID of the QE.
    pub isvprodid: u16,
    /// Levels by ISVSVN, highest first.
    pub tcb_levels: Vec<SvnLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbInfo {
    id: Option<String>,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    #[serde(default)]
    tcb_evaluation_data_number: u32,
    tdx_module: Option<RawModule>,
    #[serde(default)]
    tdx_module_identities: Vec<RawModule>,
    tcb_levels: Vec<RawLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModule {
    #[serde(default)]
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    #[serde(default)]
    tcb_levels: Vec<RawSvnLevel>,
}

#[derive(Deserialize)]
struct RawSvn {
    svn: u8,
}

#[derive(Deserialize)]
struct RawTcb {
    sgxtcbcomponents: Vec<RawSvn>,
    pcesvn: u16,
    tdxtcbcomponents: Option<Vec<RawSvn>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLevel {
    tcb: RawTcb,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawIsvsvn {
    isvsvn: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSvnLevel {
    tcb: RawIsvsvn,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQeIdentity {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<RawSvnLevel>,
}

fn hex_n<const N: usize>(
    s: &str,
    what: &'static str,
    field: &'static str,
) -> Result<[u8; N], TcbInfoError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| TcbInfoError::Field { what, field })?;
    Ok(out)
}

fn time(s: &str, what: &'static str, field: &'static str) -> Result<UnixTime, TcbInfoError> {
    UnixTime::parse_rfc3339(s).ok_or(TcbInfoError::Field { what, field })
}

fn status(s: &str, what: &'static str) -> Result<TcbStatus, TcbInfoError> {
    s.parse()
        .map_err(|source| TcbInfoError::Status { what, source })
}

fn svns(v: &[RawSvn], what: &'static str, field: &'static str) -> Result<[u8; 16], TcbInfoError> {
    let mut out = [0u8; 16];
    if v.len() != 16 {
        return Err(TcbInfoError::Field { what, field });
    }
    for (o, c) in out.iter_mut().zip(v) {
        *o = c.svn;
    }
    Ok(out)
}

fn svn_levels(v: Vec<RawSvnLevel>, what: &'static str) -> Result<Vec<SvnLevel>, TcbInfoError> {
    v.into_iter()
        .map(|l| {
            Ok(SvnLevel {
                isvsvn: l.tcb.isvsvn,
                status: status(&l.tcb_status, what)?,
                tcb_date: l.tcb_date,
                advisory_ids: l.advisory_ids,
            })
        })
        .collect()
}

fn module(m: RawModule, what: &'static str) -> Result<TdxModule, TcbInfoError> {
    Ok(TdxModule {
        mrsigner: hex_n(&m.mrsigner, what, "tdxModule.mrsigner")?,
        attributes: hex_n(&m.attributes, what, "tdxModule.attributes")?,
        attributes_mask: hex_n(&m.attributes_mask, what, "tdxModule.attributesMask")?,
        tcb_levels: svn_levels(m.tcb_levels, what)?,
        id: m.id,
    })
}

impl TcbInfo {
    /// Parses the `tcbInfo` object text (exactly as signed).
    pub fn parse(text: &str) -> Result<TcbInfo, TcbInfoError> {
        const W: &str = "tcb_info";
        let raw: RawTcbInfo =
            serde_json::from_str(text).map_err(|source| TcbInfoError::Json { what: W, source })?;
        let tcb_levels = raw
            .tcb_levels
            .into_iter()
            .map(|l| {
                Ok(TcbLevel {
                    sgx_components: svns(&l.tcb.sgxtcbcomponents, W, "sgxtcbcomponents")?,
                    pce_svn: l.tcb.pcesvn,
                    tdx_components: l
                        .tcb
                        .tdxtcbcomponents
                        .as_deref()
                        .map(|c| svns(c, W, "tdxtcbcomponents"))
                        .transpose()?,
                    status: status(&l.tcb_status, W)?,
                    tcb_date: l.tcb_date,
                    advisory_ids: l.advisory_ids,
                })
            })
            .collect::<Result<Vec<_>, TcbInfoError>>()?;
        Ok(TcbInfo {
            id: raw.id.unwrap_or_else(|| "SGX".to_owned()),
            version: raw.version,
            issue_date: time(&raw.issue_date, W, "issueDate")?,
            next_update: time(&raw.next_update, W, "nextUpdate")?,
            fmspc: hex_n(&raw.fmspc, W, "fmspc")?,
            pce_id: hex_n(&raw.pce_id, W, "pceId")?,
            tcb_evaluation_data_number: raw.tcb_evaluation_data_number,
            tdx_module: raw.tdx_module.map(|m| module(m, W)).transpose()?,
            tdx_module_identities: raw
                .tdx_module_identities
                .into_iter()
                .map(|m| module(m, W))
                .collect::<Result<_, _>>()?,
            tcb_levels,
        })
    }

    /// The first level (Intel orders them highest first) whose every
    /// component the platform meets. For TDX, the TEE TCB SVNs must meet the
    /// level's TDX components too; when the module major version
    /// (`tee_tcb_svn[1]`) is non-zero the first two bytes describe the module
    /// and are judged by its identity instead.
    pub fn matching_level(
        &self,
        comp_svns: &[u8; 16],
        pce_svn: u16,
        tee_tcb_svn: Option<&[u8; 16]>,
    ) -> Option<&TcbLevel> {
        self.tcb_levels.iter().find(|l| {
            let sgx = comp_svns
                .iter()
                .zip(&l.sgx_components)
                .all(|(have, need)| have >= need)
                && pce_svn >= l.pce_svn;
            let tdx = match (tee_tcb_svn, &l.tdx_components) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(have), Some(need)) => {
                    let skip = if have.get(1).is_some_and(|v| *v > 0) {
                        2
                    } else {
                        0
                    };
                    have.iter()
                        .zip(need)
                        .skip(skip)
                        .all(|(have, need)| have >= need)
                }
            };
            sgx && tdx
        })
    }
}

impl QeIdentity {
    /// Parses the `enclaveIdentity` object text (exactly as signed).
    pub fn parse(text: &str) -> Result<QeIdentity, TcbInfoError> {
        const W: &str = "qe_identity";
        let raw: RawQeIdentity =
            serde_json::from_str(text).map_err(|source| TcbInfoError::Json { what: W, source })?;
        Ok(QeIdentity {
            version: raw.version,
            issue_date: time(&raw.issue_date, W, "issueDate")?,
            next_update: time(&raw.next_update, W, "nextUpdate")?,
            miscselect: u32::from_be_bytes(hex_n(&raw.miscselect, W, "miscselect")?),
            miscselect_mask: u32::from_be_bytes(hex_n(&raw.miscselect_mask, W, "miscselectMask")?),
            attributes: hex_n(&raw.attributes, W, "attributes")?,
            attributes_mask: hex_n(&raw.attributes_mask, W, "attributesMask")?,
            mrsigner: hex_n(&raw.mrsigner, W, "mrsigner")?,
            isvprodid: raw.isvprodid,
            tcb_levels: svn_levels(raw.tcb_levels, W)?,
            id: raw.id,
        })
    }
}

/// The first level (highest first) whose ISVSVN the given one meets.
pub(crate) fn svn_level(levels: &[SvnLevel], isvsvn: u16) -> Option<&SvnLevel> {
    levels.iter().find(|l| isvsvn >= l.isvsvn)
}
