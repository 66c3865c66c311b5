//! Runtime metadata (V14, V15, V16) read from the chain at start, normalised into the few
//! lookups a client needs: call indices and arguments, storage keys with the hashers the
//! metadata names, storage defaults and constants decoded through the type registry,
//! transaction (signed) extensions, runtime APIs. Nothing is generated from a metadata file,
//! so a runtime upgrade that moves a call index or adds an extension is followed by
//! re-reading the metadata.

use std::collections::BTreeMap;

use blake2::Blake2b;
use blake2::digest::Digest;
use blake2::digest::consts::{U16, U32};
use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use parity_scale_codec::Decode;
use scale_info::form::PortableForm;
use scale_info::{PortableRegistry, TypeDef};

use super::value::{self, Value, ValueError};

/// The metadata magic, `b"meta"`, in front of every encoded metadata.
pub const META_MAGIC: [u8; 4] = *b"meta";

/// Why metadata could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The bytes are not SCALE `RuntimeMetadataPrefixed`.
    #[error("metadata does not decode: {0}")]
    Decode(#[source] parity_scale_codec::Error),
    /// The bytes do not start with `meta`.
    #[error("metadata does not start with the `meta` magic")]
    Magic,
    /// Only V14, V15 and V16 carry a type registry we can read.
    #[error("metadata version {0} is not supported (want 14, 15 or 16)")]
    UnsupportedVersion(u32),
    /// No pallet of that name.
    #[error("no pallet {0}")]
    NoPallet(String),
    /// The pallet has no call of that name.
    #[error("no call {pallet}.{call}")]
    NoCall {
        /// Pallet name.
        pallet: String,
        /// Call name.
        call: String,
    },
    /// The pallet has no storage entry of that name.
    #[error("no storage entry {pallet}.{entry}")]
    NoStorage {
        /// Pallet name.
        pallet: String,
        /// Entry name.
        entry: String,
    },
    /// The pallet has no constant of that name.
    #[error("no constant {pallet}.{name}")]
    NoConstant {
        /// Pallet name.
        pallet: String,
        /// Constant name.
        name: String,
    },
    /// More keys than the storage entry has hashers.
    #[error("storage {entry}: {given} keys given, the entry has {max}")]
    TooManyKeys {
        /// Entry name.
        entry: String,
        /// Keys given.
        given: usize,
        /// Hashers in the metadata.
        max: usize,
    },
    /// A type the metadata names is not what it should be.
    #[error("metadata type {ty}: {reason}")]
    BadType {
        /// Type id.
        ty: u32,
        /// What is wrong.
        reason: String,
    },
    /// A value did not decode as its type.
    #[error("decoding {what}: {source}")]
    Value {
        /// What was being decoded.
        what: String,
        /// The cause.
        #[source]
        source: ValueError,
    },
    /// A value decoded but is not the integer or boolean asked for.
    #[error("{what}: not {want}")]
    WrongKind {
        /// What was decoded.
        what: String,
        /// What was wanted.
        want: &'static str,
    },
}

/// A storage key hasher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // the names the metadata uses
pub enum Hasher {
    /// 16-byte Blake2b.
    Blake2_128,
    /// 32-byte Blake2b.
    Blake2_256,
    /// 16-byte Blake2b followed by the key.
    Blake2_128Concat,
    /// Two xxHash64 (seeds 0, 1).
    Twox128,
    /// Four xxHash64 (seeds 0..=3).
    Twox256,
    /// One xxHash64 (seed 0) followed by the key.
    Twox64Concat,
    /// The key itself.
    Identity,
}

impl Hasher {
    /// The hashed form of an encoded key.
    pub fn hash(self, key: &[u8]) -> Vec<u8> {
        match self {
            Hasher::Blake2_128 => blake2_128(key).to_vec(),
            Hasher::Blake2_256 => Blake2b::<U32>::digest(key).to_vec(),
            Hasher::Blake2_128Concat => [&blake2_128(key)[..], key].concat(),
            Hasher::Twox128 => twox(key, 2),
            Hasher::Twox256 => twox(key, 4),
            Hasher::Twox64Concat => [&twox(key, 1)[..], key].concat(),
            Hasher::Identity => key.to_vec(),
        }
    }

    /// Bytes of hash in front of the key for concat hashers, or the whole (opaque) hash.
    pub fn hash_len(self) -> usize {
        match self {
            Hasher::Blake2_128 | Hasher::Blake2_128Concat | Hasher::Twox128 => 16,
            Hasher::Blake2_256 | Hasher::Twox256 => 32,
            Hasher::Twox64Concat => 8,
            Hasher::Identity => 0,
        }
    }

    /// True when the key can be read back from the hashed form.
    pub fn is_transparent(self) -> bool {
        matches!(
            self,
            Hasher::Blake2_128Concat | Hasher::Twox64Concat | Hasher::Identity
        )
    }

    fn from_meta(h: &frame_metadata::v14::StorageHasher) -> Self {
        use frame_metadata::v14::StorageHasher as H;
        match h {
            H::Blake2_128 => Hasher::Blake2_128,
            H::Blake2_256 => Hasher::Blake2_256,
            H::Blake2_128Concat => Hasher::Blake2_128Concat,
            H::Twox128 => Hasher::Twox128,
            H::Twox256 => Hasher::Twox256,
            H::Twox64Concat => Hasher::Twox64Concat,
            H::Identity => Hasher::Identity,
        }
    }
}

fn blake2_128(data: &[u8]) -> [u8; 16] {
    Blake2b::<U16>::digest(data).into()
}

/// `n` xxHash64 words (seeds 0..n), little-endian: Twox64/128/256.
fn twox(data: &[u8], n: u64) -> Vec<u8> {
    (0..n)
        .flat_map(|seed| twox_hash::XxHash64::oneshot(seed, data).to_le_bytes())
        .collect()
}

/// `twox_128(text)`: the hashed pallet prefix and entry name of a storage key.
pub fn twox_128(data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&twox(data, 2));
    out
}

/// One argument of a call or runtime API method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The argument's name.
    pub name: String,
    /// Its type id in the registry.
    pub ty: u32,
    /// The Rust type name the metadata records, when it does.
    pub type_name: Option<String>,
}

/// A call of a pallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The pallet's index (first byte of the encoded call).
    pub pallet_index: u8,
    /// The call's index in the pallet (second byte).
    pub call_index: u8,
    /// The call's name.
    pub name: String,
    /// Its arguments, in encoding order.
    pub args: Vec<Arg>,
}

/// The shape of a storage entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// One value.
    Plain {
        /// The value's type id.
        value_ty: u32,
    },
    /// A (multi-)map: one hasher and key type per key.
    Map {
        /// The hashers, in key order.
        hashers: Vec<Hasher>,
        /// The key types, in key order (the metadata's tuple, split).
        key_tys: Vec<u32>,
        /// The value's type id.
        value_ty: u32,
    },
}

/// A storage entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageEntry {
    /// The entry's name.
    pub name: String,
    /// True for `Option` entries (absent means none), false for `ValueQuery` (absent means
    /// the default).
    pub optional: bool,
    /// Plain or map.
    pub kind: StorageKind,
    /// The SCALE default value.
    pub default: Vec<u8>,
}

impl StorageEntry {
    /// The value's type id.
    pub fn value_ty(&self) -> u32 {
        match &self.kind {
            StorageKind::Plain { value_ty } | StorageKind::Map { value_ty, .. } => *value_ty,
        }
    }

    /// The hashers (empty for a plain entry).
    pub fn hashers(&self) -> &[Hasher] {
        match &self.kind {
            StorageKind::Plain { .. } => &[],
            StorageKind::Map { hashers, .. } => hashers,
        }
    }
}

/// A pallet constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constant {
    /// The constant's name.
    pub name: String,
    /// Its type id.
    pub ty: u32,
    /// Its SCALE value.
    pub value: Vec<u8>,
}

/// A pallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pallet {
    /// The pallet's name.
    pub name: String,
    /// Its index.
    pub index: u8,
    /// The type id of its call enum.
    pub calls_ty: Option<u32>,
    /// The type id of its event enum.
    pub event_ty: Option<u32>,
    /// The type id of its error enum.
    pub error_ty: Option<u32>,
    /// The storage prefix (usually the pallet name).
    pub storage_prefix: String,
    /// Its storage entries.
    pub storage: Vec<StorageEntry>,
    /// Its constants.
    pub constants: Vec<Constant>,
}

/// A transaction extension (a "signed extension" before V16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Its identifier, e.g. `CheckMortality`.
    pub identifier: String,
    /// The type of what the extrinsic carries for it.
    pub ty: u32,
    /// The type of what only the signed payload carries (V14/V15 `additional_signed`, V16
    /// `implicit`).
    pub implicit_ty: u32,
}

/// How extrinsics are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtrinsicInfo {
    /// The extrinsic format versions the runtime accepts (4, and 5 from V16).
    pub versions: Vec<u8>,
    /// The address type (V15+).
    pub address_ty: Option<u32>,
    /// The outer call type (V15+).
    pub call_ty: Option<u32>,
    /// The signature type (V15+).
    pub signature_ty: Option<u32>,
    /// Every extension, in the order the metadata lists them.
    pub extensions: Vec<Extension>,
    /// V16: indices into `extensions` per transaction-extension version (version 0 is what
    /// v4 signed extrinsics use); empty before V16, where every extension applies.
    pub extensions_by_version: BTreeMap<u8, Vec<u32>>,
}

/// A runtime API method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeApiMethod {
    /// The method's name.
    pub name: String,
    /// Its inputs.
    pub inputs: Vec<Arg>,
    /// Its output type id.
    pub output_ty: u32,
}

/// A runtime API (trait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeApi {
    /// The trait's name, e.g. `NeuronInfoRuntimeApi`.
    pub name: String,
    /// Its methods.
    pub methods: Vec<RuntimeApiMethod>,
}

// V14, V15 and V16 spell pallets, runtime APIs and extensions with their own types but the
// same field names: one conversion each, written once.
macro_rules! pallets {
    ($m:expr) => {
        $m.pallets
            .iter()
            .map(|p| {
                let (storage_prefix, storage) = match &p.storage {
                    Some(st) => (
                        st.prefix.clone(),
                        st.entries
                            .iter()
                            .map(|e| {
                                storage_entry(&$m.types, &e.name, &e.modifier, &e.ty, &e.default)
                            })
                            .collect::<Result<Vec<_>, MetadataError>>()?,
                    ),
                    None => (p.name.clone(), Vec::new()),
                };
                Ok(Pallet {
                    name: p.name.clone(),
                    index: p.index,
                    calls_ty: p.calls.as_ref().map(|c| c.ty.id),
                    event_ty: p.event.as_ref().map(|c| c.ty.id),
                    error_ty: p.error.as_ref().map(|c| c.ty.id),
                    storage_prefix,
                    storage,
                    constants: p
                        .constants
                        .iter()
                        .map(|c| Constant {
                            name: c.name.clone(),
                            ty: c.ty.id,
                            value: c.value.clone(),
                        })
                        .collect(),
                })
            })
            .collect::<Result<Vec<Pallet>, MetadataError>>()?
    };
}

macro_rules! apis {
    ($m:expr) => {
        $m.apis
            .iter()
            .map(|a| RuntimeApi {
                name: a.name.clone(),
                methods: a
                    .methods
                    .iter()
                    .map(|mm| RuntimeApiMethod {
                        name: mm.name.clone(),
                        inputs: mm
                            .inputs
                            .iter()
                            .map(|i| Arg {
                                name: i.name.clone(),
                                ty: i.ty.id,
                                type_name: None,
                            })
                            .collect(),
                        output_ty: mm.output.id,
                    })
                    .collect(),
            })
            .collect()
    };
}

macro_rules! extensions {
    ($list:expr, $implicit:ident) => {
        $list
            .iter()
            .map(|e| Extension {
                identifier: e.identifier.clone(),
                ty: e.ty.id,
                implicit_ty: e.$implicit.id,
            })
            .collect()
    };
}

/// Decoded runtime metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    version: u32,
    types: PortableRegistry,
    pallets: Vec<Pallet>,
    extrinsic: ExtrinsicInfo,
    apis: Option<Vec<RuntimeApi>>,
}

impl Metadata {
    /// Decodes `meta`-prefixed SCALE metadata (what `state_getMetadata` and
    /// `Metadata_metadata_at_version` return).
    pub fn decode(bytes: &[u8]) -> Result<Self, MetadataError> {
        if !bytes.starts_with(&META_MAGIC) {
            return Err(MetadataError::Magic);
        }
        let mut input = bytes;
        let prefixed =
            RuntimeMetadataPrefixed::decode(&mut input).map_err(MetadataError::Decode)?;
        Self::from_runtime(prefixed.1)
    }

    /// Normalises decoded metadata.
    pub fn from_runtime(meta: RuntimeMetadata) -> Result<Self, MetadataError> {
        match meta {
            RuntimeMetadata::V14(m) => Ok(Metadata {
                version: 14,
                pallets: pallets!(m),
                extrinsic: ExtrinsicInfo {
                    versions: vec![m.extrinsic.version],
                    address_ty: None,
                    call_ty: None,
                    signature_ty: None,
                    extensions: extensions!(m.extrinsic.signed_extensions, additional_signed),
                    extensions_by_version: BTreeMap::new(),
                },
                apis: None,
                types: m.types,
            }),
            RuntimeMetadata::V15(m) => Ok(Metadata {
                version: 15,
                pallets: pallets!(m),
                extrinsic: ExtrinsicInfo {
                    versions: vec![m.extrinsic.version],
                    address_ty: Some(m.extrinsic.address_ty.id),
                    call_ty: Some(m.extrinsic.call_ty.id),
                    signature_ty: Some(m.extrinsic.signature_ty.id),
                    extensions: extensions!(m.extrinsic.signed_extensions, additional_signed),
                    extensions_by_version: BTreeMap::new(),
                },
                apis: Some(apis!(m)),
                types: m.types,
            }),
            RuntimeMetadata::V16(m) => Ok(Metadata {
                version: 16,
                pallets: pallets!(m),
                extrinsic: ExtrinsicInfo {
                    versions: m.extrinsic.versions.clone(),
                    address_ty: Some(m.extrinsic.address_ty.id),
                    call_ty: Some(m.extrinsic.call_ty.id),
                    signature_ty: Some(m.extrinsic.signature_ty.id),
                    extensions: extensions!(m.extrinsic.transaction_extensions, implicit),
                    extensions_by_version: m
                        .extrinsic
                        .transaction_extensions_by_version
                        .iter()
                        .map(|(v, idx)| (*v, idx.iter().map(|c| c.0).collect()))
                        .collect(),
                },
                apis: Some(apis!(m)),
                types: m.types,
            }),
            other => Err(MetadataError::UnsupportedVersion(other.version())),
        }
    }

    /// The metadata version (14, 15 or 16).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The type registry.
    pub fn types(&self) -> &PortableRegistry {
        &self.types
    }

    /// Every pallet.
    pub fn pallets(&self) -> &[Pallet] {
        &self.pallets
    }

    /// The pallet of that name.
    pub fn pallet(&self, name: &str) -> Result<&Pallet, MetadataError> {
        self.pallets
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| MetadataError::NoPallet(name.to_owned()))
    }

    /// The pallet of that index.
    pub fn pallet_by_index(&self, index: u8) -> Option<&Pallet> {
        self.pallets.iter().find(|p| p.index == index)
    }

    /// `pallet.call`: its indices and arguments.
    pub fn call(&self, pallet: &str, call: &str) -> Result<Call, MetadataError> {
        let p = self.pallet(pallet)?;
        let no_call = || MetadataError::NoCall {
            pallet: pallet.to_owned(),
            call: call.to_owned(),
        };
        let ty = p.calls_ty.ok_or_else(no_call)?;
        let variants = self.variants(ty)?;
        let v = variants
            .iter()
            .find(|v| v.name == call)
            .ok_or_else(no_call)?;
        Ok(Call {
            pallet_index: p.index,
            call_index: v.index,
            name: v.name.clone(),
            args: v
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| Arg {
                    name: f.name.clone().unwrap_or_else(|| i.to_string()),
                    ty: f.ty.id,
                    type_name: f.type_name.clone(),
                })
                .collect(),
        })
    }

    /// The variants of an enum type (calls, events, errors).
    pub fn variants(&self, ty: u32) -> Result<&[scale_info::Variant<PortableForm>], MetadataError> {
        match self.types.resolve(ty).map(|t| &t.type_def) {
            Some(TypeDef::Variant(v)) => Ok(&v.variants),
            Some(_) => Err(MetadataError::BadType {
                ty,
                reason: "not an enum".into(),
            }),
            None => Err(MetadataError::BadType {
                ty,
                reason: "not in the registry".into(),
            }),
        }
    }

    /// `pallet.entry` of the storage.
    pub fn storage_entry(&self, pallet: &str, entry: &str) -> Result<&StorageEntry, MetadataError> {
        self.pallet(pallet)?
            .storage
            .iter()
            .find(|e| e.name == entry)
            .ok_or_else(|| MetadataError::NoStorage {
                pallet: pallet.to_owned(),
                entry: entry.to_owned(),
            })
    }

    /// The storage key of `pallet.entry` for these SCALE-encoded keys: all of them for one
    /// value, fewer for the prefix of an iteration (`state_getKeysPaged`).
    pub fn storage_key(
        &self,
        pallet: &str,
        entry: &str,
        keys: &[&[u8]],
    ) -> Result<Vec<u8>, MetadataError> {
        let p = self.pallet(pallet)?;
        let e = self.storage_entry(pallet, entry)?;
        let hashers = e.hashers();
        if keys.len() > hashers.len() {
            return Err(MetadataError::TooManyKeys {
                entry: entry.to_owned(),
                given: keys.len(),
                max: hashers.len(),
            });
        }
        let mut out = Vec::with_capacity(32 + keys.iter().map(|k| k.len() + 16).sum::<usize>());
        out.extend_from_slice(&twox_128(p.storage_prefix.as_bytes()));
        out.extend_from_slice(&twox_128(e.name.as_bytes()));
        for (h, k) in hashers.iter().zip(keys) {
            out.extend_from_slice(&h.hash(k));
        }
        Ok(out)
    }

    /// The stored value of `pallet.entry` decoded through the registry; `None` (absent)
    /// decodes the entry's default (an `Option` entry's default is "none": `Ok(None)`).
    pub fn decode_storage(
        &self,
        pallet: &str,
        entry: &str,
        stored: Option<&[u8]>,
    ) -> Result<Option<Value>, MetadataError> {
        let e = self.storage_entry(pallet, entry)?;
        let bytes = match stored {
            Some(b) => b,
            None if e.optional => return Ok(None),
            None => &e.default,
        };
        self.decode_value(e.value_ty(), bytes, &format!("{pallet}.{entry}"))
            .map(Some)
    }

    /// `pallet.name` of the constants.
    pub fn constant(&self, pallet: &str, name: &str) -> Result<&Constant, MetadataError> {
        self.pallet(pallet)?
            .constants
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| MetadataError::NoConstant {
                pallet: pallet.to_owned(),
                name: name.to_owned(),
            })
    }

    /// A constant decoded through the registry.
    pub fn constant_value(&self, pallet: &str, name: &str) -> Result<Value, MetadataError> {
        let c = self.constant(pallet, name)?;
        self.decode_value(c.ty, &c.value, &format!("{pallet}.{name}"))
    }

    /// All of `bytes` decoded as type `ty`; `what` names it in errors.
    pub fn decode_value(&self, ty: u32, bytes: &[u8], what: &str) -> Result<Value, MetadataError> {
        value::decode_all(&self.types, ty, bytes).map_err(|source| MetadataError::Value {
            what: what.to_owned(),
            source,
        })
    }

    /// An unsigned integer value (u8..u128, seeing through newtypes) as u64.
    pub fn value_u64(v: &Value, what: &str) -> Result<u64, MetadataError> {
        v.as_u128()
            .and_then(|x| u64::try_from(x).ok())
            .ok_or_else(|| MetadataError::WrongKind {
                what: what.to_owned(),
                want: "an unsigned integer up to u64",
            })
    }

    /// A boolean value (seeing through newtypes).
    pub fn value_bool(v: &Value, what: &str) -> Result<bool, MetadataError> {
        v.as_bool().ok_or_else(|| MetadataError::WrongKind {
            what: what.to_owned(),
            want: "a boolean",
        })
    }

    /// How extrinsics are built.
    pub fn extrinsic(&self) -> &ExtrinsicInfo {
        &self.extrinsic
    }

    /// The extensions a signed extrinsic carries for transaction-extension version
    /// `ext_version` (0 for v4 extrinsics), in order. Before V16 every extension applies.
    pub fn transaction_extensions(&self, ext_version: u8) -> Vec<&Extension> {
        let all = &self.extrinsic.extensions;
        if self.extrinsic.extensions_by_version.is_empty() {
            return all.iter().collect();
        }
        self.extrinsic
            .extensions_by_version
            .get(&ext_version)
            .map(|idx| {
                idx.iter()
                    .filter_map(|i| all.get(usize::try_from(*i).ok()?))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The runtime APIs (V15+); `None` for V14, which does not list them.
    pub fn runtime_apis(&self) -> Option<&[RuntimeApi]> {
        self.apis.as_deref()
    }

    /// `api_method`, e.g. (`NeuronInfoRuntimeApi`, `get_neurons_lite`).
    pub fn runtime_api_method(&self, api: &str, method: &str) -> Option<&RuntimeApiMethod> {
        self.apis
            .as_ref()?
            .iter()
            .find(|a| a.name == api)?
            .methods
            .iter()
            .find(|m| m.name == method)
    }

    /// Whether the runtime has `api_method`: `None` when the metadata cannot tell (V14).
    pub fn has_runtime_api(&self, api: &str, method: &str) -> Option<bool> {
        self.apis.as_ref()?;
        Some(self.runtime_api_method(api, method).is_some())
    }

    /// The last path segment of a type (`AxonInfo`), or its shape for unnamed types.
    pub fn type_name(&self, ty: u32) -> String {
        match self.types.resolve(ty) {
            Some(t) => match t.path.segments.last() {
                Some(s) => s.clone(),
                None => match &t.type_def {
                    TypeDef::Primitive(p) => format!("{p:?}").to_lowercase(),
                    TypeDef::Sequence(_) => "Vec".into(),
                    TypeDef::Array(a) => format!("[_; {}]", a.len),
                    TypeDef::Tuple(_) => "tuple".into(),
                    TypeDef::Compact(_) => "Compact".into(),
                    _ => format!("type {ty}"),
                },
            },
            None => format!("type {ty}"),
        }
    }
}

fn storage_entry(
    reg: &PortableRegistry,
    name: &str,
    modifier: &frame_metadata::v14::StorageEntryModifier,
    ty: &frame_metadata::v14::StorageEntryType<PortableForm>,
    default: &[u8],
) -> Result<StorageEntry, MetadataError> {
    use frame_metadata::v14::{StorageEntryModifier, StorageEntryType};
    let kind = match ty {
        StorageEntryType::Plain(t) => StorageKind::Plain { value_ty: t.id },
        StorageEntryType::Map {
            hashers,
            key,
            value,
        } => {
            let hashers: Vec<Hasher> = hashers.iter().map(Hasher::from_meta).collect();
            // One hasher: the key type is the key. Several: the key type is a tuple of them.
            let key_tys = if hashers.len() == 1 {
                vec![key.id]
            } else {
                match reg.resolve(key.id).map(|t| &t.type_def) {
                    Some(TypeDef::Tuple(t)) if t.fields.len() == hashers.len() => {
                        t.fields.iter().map(|f| f.id).collect()
                    }
                    _ => {
                        return Err(MetadataError::BadType {
                            ty: key.id,
                            reason: format!(
                                "storage {name}: {} hashers but the key is not a tuple of as many",
                                hashers.len()
                            ),
                        });
                    }
                }
            };
            StorageKind::Map {
                hashers,
                key_tys,
                value_ty: value.id,
            }
        }
    };
    Ok(StorageEntry {
        name: name.to_owned(),
        optional: matches!(modifier, StorageEntryModifier::Optional),
        kind,
        default: default.to_vec(),
    })
}
