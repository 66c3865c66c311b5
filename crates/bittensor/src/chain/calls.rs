//! Calls built from the runtime metadata: the call's pallet and call index come from the
//! metadata, and each argument is checked against the type the metadata gives it (seeing
//! through newtypes such as `NetUid(u16)` and `BoundedVec<u8, _>`, honouring `Compact`)
//! before it is encoded. A runtime that renames, reorders or retypes an argument is refused
//! with a typed error instead of being sent bytes it would misread.

use parity_scale_codec::{Compact, Encode};
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};

use super::metadata::{Metadata, MetadataError};

/// Subtensor's pallet.
pub const SUBTENSOR: &str = "SubtensorModule";

/// How deep newtypes are looked through.
const MAX_DEPTH: usize = 16;

/// An argument value for [`encode_call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// `u8`.
    U8(u8),
    /// `u16`.
    U16(u16),
    /// `u32`.
    U32(u32),
    /// `u64`.
    U64(u64),
    /// `u128`.
    U128(u128),
    /// `Vec<u8>` (or a bounded one).
    Bytes(Vec<u8>),
    /// `Vec<u16>`.
    U16s(Vec<u16>),
}

impl ArgValue {
    fn kind(&self) -> &'static str {
        match self {
            ArgValue::U8(_) => "u8",
            ArgValue::U16(_) => "u16",
            ArgValue::U32(_) => "u32",
            ArgValue::U64(_) => "u64",
            ArgValue::U128(_) => "u128",
            ArgValue::Bytes(_) => "Vec<u8>",
            ArgValue::U16s(_) => "Vec<u16>",
        }
    }
}

/// Why a call could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The metadata has no such pallet or call.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The call's arguments differ in number or names from what this client sends.
    #[error("{call}: the runtime's arguments are ({runtime}), this client sends ({ours})")]
    Arguments {
        /// `pallet.call`.
        call: String,
        /// The runtime's argument names.
        runtime: String,
        /// Ours.
        ours: String,
    },
    /// An argument's type in the metadata is not the one this value encodes as.
    #[error("{call}: argument {arg} is {runtime} in the runtime, not {ours}")]
    ArgumentType {
        /// `pallet.call`.
        call: String,
        /// The argument.
        arg: String,
        /// The runtime's type (name or shape).
        runtime: String,
        /// What this client has.
        ours: &'static str,
    },
}

/// The shape an argument encodes as, resolved through newtypes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Prim(TypeDefPrimitive),
    Compact(TypeDefPrimitive),
    SeqOf(TypeDefPrimitive),
    Other,
}

fn prim_of(reg: &PortableRegistry, ty: u32, depth: usize) -> Option<TypeDefPrimitive> {
    match shape(reg, ty, depth) {
        Shape::Prim(p) => Some(p),
        _ => None,
    }
}

fn shape(reg: &PortableRegistry, ty: u32, depth: usize) -> Shape {
    if depth > MAX_DEPTH {
        return Shape::Other;
    }
    let Some(t) = reg.resolve(ty) else {
        return Shape::Other;
    };
    match &t.type_def {
        TypeDef::Primitive(p) => Shape::Prim(p.clone()),
        TypeDef::Composite(c) if c.fields.len() == 1 => shape(reg, c.fields[0].ty.id, depth + 1),
        TypeDef::Compact(c) => match prim_of(reg, c.type_param.id, depth + 1) {
            Some(p) => Shape::Compact(p),
            None => Shape::Other,
        },
        TypeDef::Sequence(s) => match prim_of(reg, s.type_param.id, depth + 1) {
            Some(p) => Shape::SeqOf(p),
            None => Shape::Other,
        },
        _ => Shape::Other,
    }
}

/// Encodes `value` as the metadata's type `ty`, or says why it cannot.
fn encode_arg(reg: &PortableRegistry, ty: u32, value: &ArgValue, out: &mut Vec<u8>) -> bool {
    use TypeDefPrimitive as P;
    match (shape(reg, ty, 0), value) {
        (Shape::Prim(P::U8), ArgValue::U8(v)) => v.encode_to(out),
        (Shape::Prim(P::U16), ArgValue::U16(v)) => v.encode_to(out),
        (Shape::Prim(P::U32), ArgValue::U32(v)) => v.encode_to(out),
        (Shape::Prim(P::U64), ArgValue::U64(v)) => v.encode_to(out),
        (Shape::Prim(P::U128), ArgValue::U128(v)) => v.encode_to(out),
        (Shape::Compact(P::U8), ArgValue::U8(v)) => Compact(*v).encode_to(out),
        (Shape::Compact(P::U16), ArgValue::U16(v)) => Compact(*v).encode_to(out),
        (Shape::Compact(P::U32), ArgValue::U32(v)) => Compact(*v).encode_to(out),
        (Shape::Compact(P::U64), ArgValue::U64(v)) => Compact(*v).encode_to(out),
        (Shape::Compact(P::U128), ArgValue::U128(v)) => Compact(*v).encode_to(out),
        (Shape::SeqOf(P::U8), ArgValue::Bytes(v)) => v.encode_to(out),
        (Shape::SeqOf(P::U16), ArgValue::U16s(v)) => v.encode_to(out),
        _ => return false,
    }
    true
}

/// `pallet.call(args)` encoded as the metadata says: `pallet index ‖ call index ‖ args`,
/// with `args` given by name in the runtime's order.
pub fn encode_call(
    metadata: &Metadata,
    pallet: &str,
    call: &str,
    args: &[(&str, ArgValue)],
) -> Result<Vec<u8>, CallError> {
    let c = metadata.call(pallet, call)?;
    let full = format!("{pallet}.{call}");
    let names_match =
        c.args.len() == args.len() && c.args.iter().zip(args).all(|(a, (n, _))| a.name == *n);
    if !names_match {
        return Err(CallError::Arguments {
            call: full,
            runtime: c
                .args
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ours: args.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        });
    }
    let mut out = vec![c.pallet_index, c.call_index];
    for (arg, (_, value)) in c.args.iter().zip(args) {
        if !encode_arg(metadata.types(), arg.ty, value, &mut out) {
            return Err(CallError::ArgumentType {
                call: full,
                arg: arg.name.clone(),
                runtime: arg
                    .type_name
                    .clone()
                    .unwrap_or_else(|| metadata.type_name(arg.ty)),
                ours: value.kind(),
            });
        }
    }
    Ok(out)
}

/// An axon announcement (`serve_axon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeAxon {
    /// Subnet.
    pub netuid: u16,
    /// The axon's version (the SDK sends its own version as an integer).
    pub version: u32,
    /// The address: an IPv4 address's u32 value, or an IPv6 address's u128.
    pub ip: u128,
    /// Port (not 0).
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
    /// The SDK's protocol number (4).
    pub protocol: u8,
}

impl ServeAxon {
    /// The announcement of `addr` on `netuid`.
    pub fn new(netuid: u16, version: u32, addr: std::net::SocketAddr) -> Self {
        let (ip, ip_type) = match addr.ip() {
            std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4),
            std::net::IpAddr::V6(v6) => (u128::from(v6), 6),
        };
        ServeAxon {
            netuid,
            version,
            ip,
            port: addr.port(),
            ip_type,
            protocol: 4,
        }
    }
}

/// `SubtensorModule.serve_axon(netuid, version, ip, port, ip_type, protocol, 0, 0)`.
pub fn serve_axon(metadata: &Metadata, a: &ServeAxon) -> Result<Vec<u8>, CallError> {
    encode_call(
        metadata,
        SUBTENSOR,
        "serve_axon",
        &[
            ("netuid", ArgValue::U16(a.netuid)),
            ("version", ArgValue::U32(a.version)),
            ("ip", ArgValue::U128(a.ip)),
            ("port", ArgValue::U16(a.port)),
            ("ip_type", ArgValue::U8(a.ip_type)),
            ("protocol", ArgValue::U8(a.protocol)),
            ("placeholder1", ArgValue::U8(0)),
            ("placeholder2", ArgValue::U8(0)),
        ],
    )
}

/// `SubtensorModule.set_weights(netuid, dests, weights, version_key)`.
pub fn set_weights(
    metadata: &Metadata,
    netuid: u16,
    dests: &[u16],
    weights: &[u16],
    version_key: u64,
) -> Result<Vec<u8>, CallError> {
    encode_call(
        metadata,
        SUBTENSOR,
        "set_weights",
        &[
            ("netuid", ArgValue::U16(netuid)),
            ("dests", ArgValue::U16s(dests.to_vec())),
            ("weights", ArgValue::U16s(weights.to_vec())),
            ("version_key", ArgValue::U64(version_key)),
        ],
    )
}

/// `SubtensorModule.commit_timelocked_weights(netuid, commit, reveal_round,
/// commit_reveal_version)`.
pub fn commit_timelocked_weights(
    metadata: &Metadata,
    netuid: u16,
    commit: &[u8],
    reveal_round: u64,
    commit_reveal_version: u16,
) -> Result<Vec<u8>, CallError> {
    encode_call(
        metadata,
        SUBTENSOR,
        "commit_timelocked_weights",
        &[
            ("netuid", ArgValue::U16(netuid)),
            ("commit", ArgValue::Bytes(commit.to_vec())),
            ("reveal_round", ArgValue::U64(reveal_round)),
            (
                "commit_reveal_version",
                ArgValue::U16(commit_reveal_version),
            ),
        ],
    )
}

/// Whether values of type `ty` encode to zero bytes (unit structs, empty tuples,
/// `PhantomData`-only wrappers, zero-length arrays): such transaction extensions carry
/// nothing. Unknown or too-deep types count as non-empty (the safe answer).
pub fn encodes_empty(reg: &PortableRegistry, ty: u32) -> bool {
    fn go(reg: &PortableRegistry, ty: u32, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Some(t) = reg.resolve(ty) else {
            return false;
        };
        match &t.type_def {
            TypeDef::Composite(c) => c.fields.iter().all(|f| go(reg, f.ty.id, depth + 1)),
            TypeDef::Tuple(t) => t.fields.iter().all(|f| go(reg, f.id, depth + 1)),
            TypeDef::Array(a) => a.len == 0 || go(reg, a.type_param.id, depth + 1),
            _ => false,
        }
    }
    go(reg, ty, 0)
}

/// The transaction extensions of a v4 extrinsic, in the metadata's order, with whether each
/// part carries data.
pub fn extensions(metadata: &Metadata) -> Vec<super::extrinsic::ExtensionInfo> {
    metadata
        .transaction_extensions(0)
        .into_iter()
        .map(|e| super::extrinsic::ExtensionInfo {
            identifier: e.identifier.clone(),
            explicit_empty: encodes_empty(metadata.types(), e.ty),
            implicit_empty: encodes_empty(metadata.types(), e.implicit_ty),
        })
        .collect()
}
