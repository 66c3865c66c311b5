//! A minimal but genuine V15 runtime metadata for the stand-in when no real blob is given
//! (`attesta devnet --bittensor`): built with `scale-info` from the Rust types below, it
//! declares a **subset** of subtensor: the `SubtensorModule` calls `set_weights` (0),
//! `serve_axon` (4) and `commit_timelocked_weights` (113) at Finney's indices, the storage
//! entries a client reads (with Finney's hashers and defaults), `System.Events` with
//! `ExtrinsicSuccess`/`ExtrinsicFailed`, the signed extensions of a v4 extrinsic, and the
//! runtime APIs `NeuronInfoRuntimeApi_get_neurons_lite` and `Metadata_metadata_at_version`.
//! Event and error indices are this subset's own, not Finney's: decode them by name.

use std::sync::OnceLock;

use frame_metadata::RuntimeMetadataPrefixed;
use frame_metadata::v15::{
    CustomMetadata, ExtrinsicMetadata, OuterEnums, PalletCallMetadata, PalletConstantMetadata,
    PalletErrorMetadata, PalletEventMetadata, PalletMetadata, PalletStorageMetadata,
    RuntimeApiMetadata, RuntimeApiMethodMetadata, RuntimeApiMethodParamMetadata,
    RuntimeMetadataV15, SignedExtensionMetadata, StorageEntryMetadata, StorageEntryModifier,
    StorageEntryType, StorageHasher,
};
use parity_scale_codec::{Decode, Encode};
use scale_info::{MetaType, Path, Type, TypeInfo, build::Variants, meta_type};

use crate::chain::neurons::{AxonInfo, NeuronInfoLite};

/// `sp_core::crypto::AccountId32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct AccountId32(pub [u8; 32]);

/// `primitive_types::H256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct H256(pub [u8; 32]);

/// `SubtensorModule` calls (a subset, at Finney's indices).
#[allow(non_camel_case_types)] // the chain's call names
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum SubtensorCall {
    /// Weights in the clear (refused while commit-reveal is on).
    #[codec(index = 0)]
    set_weights {
        /// Subnet.
        netuid: u16,
        /// Uids.
        dests: Vec<u16>,
        /// u16-normalised weights.
        weights: Vec<u16>,
        /// Version key.
        version_key: u64,
    },
    /// Announce an axon.
    #[codec(index = 4)]
    serve_axon {
        /// Subnet.
        netuid: u16,
        /// Axon version.
        version: u32,
        /// Address (IPv4 as a u32 value).
        ip: u128,
        /// Port.
        port: u16,
        /// 4 or 6.
        ip_type: u8,
        /// Protocol.
        protocol: u8,
        /// Reserved.
        placeholder1: u8,
        /// Reserved.
        placeholder2: u8,
    },
    /// A timelock-encrypted weights commit (commit-reveal v4).
    #[codec(index = 113)]
    commit_timelocked_weights {
        /// Subnet.
        netuid: u16,
        /// The ciphertext (`BoundedVec<u8, 5000>` on chain).
        commit: Vec<u8>,
        /// The drand round it decrypts at.
        reveal_round: u64,
        /// The commit-reveal version.
        commit_reveal_version: u16,
    },
}

/// The outer call enum.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum RuntimeCall {
    /// `SubtensorModule` (pallet 7).
    #[codec(index = 7)]
    SubtensorModule(SubtensorCall),
}

/// `Weight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct Weight {
    /// Computation.
    #[codec(compact)]
    pub ref_time: u64,
    /// Proof size.
    #[codec(compact)]
    pub proof_size: u64,
}

/// `DispatchClass`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum DispatchClass {
    /// Normal.
    #[default]
    Normal,
    /// Operational.
    Operational,
    /// Mandatory.
    Mandatory,
}

/// `Pays`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum Pays {
    /// Pays a fee.
    #[default]
    Yes,
    /// Free.
    No,
}

/// `DispatchEventInfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct DispatchEventInfo {
    /// Weight used.
    pub weight: Weight,
    /// Class.
    pub class: DispatchClass,
    /// Fee.
    pub pays_fee: Pays,
}

/// `ModuleError`: the pallet index and the error's index (first byte of four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct ModuleError {
    /// Pallet index.
    pub index: u8,
    /// Error index, then three reserved bytes.
    pub error: [u8; 4],
}

/// `DispatchError` (the first variants of the real one, at the real indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum DispatchError {
    /// Other.
    Other,
    /// Lookup failed.
    CannotLookup,
    /// Bad origin.
    BadOrigin,
    /// A pallet's error.
    Module(ModuleError),
}

/// `frame_system::Event` (a subset).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum SystemEvent {
    /// The extrinsic succeeded.
    ExtrinsicSuccess {
        /// Its dispatch info.
        dispatch_info: DispatchEventInfo,
    },
    /// The extrinsic failed.
    ExtrinsicFailed {
        /// Why.
        dispatch_error: DispatchError,
        /// Its dispatch info.
        dispatch_info: DispatchEventInfo,
    },
}

/// `SubtensorModule` events (a subset; indices are this subset's).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum SubtensorEvent {
    /// Weights set: (netuid, uid).
    WeightsSet(u16, u16),
    /// An axon was served: (netuid, hotkey).
    AxonServed(u16, AccountId32),
    /// A timelocked commit: (hotkey, netuid, commit hash, reveal round).
    TimelockedWeightsCommitted(AccountId32, u16, H256, u64),
}

/// `SubtensorModule` errors (a subset of the real names; indices are this subset's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum SubtensorError {
    /// The hotkey is not registered on the subnet.
    HotKeyNotRegisteredInSubNet,
    /// Rate limit.
    SettingWeightsTooFast,
    /// Version key below the subnet's.
    IncorrectWeightVersionKey,
    /// `set_weights` while commit-reveal is on.
    CommitRevealEnabled,
    /// A commit while commit-reveal is off.
    CommitRevealDisabled,
    /// `serve_axon` too often.
    ServingRateLimitExceeded,
    /// ip_type not 4 or 6.
    InvalidIpType,
    /// Port 0.
    InvalidPort,
    /// Too many unrevealed commits.
    TooManyUnrevealedCommits,
    /// A uid that does not exist.
    UidVecContainInvalidOne,
    /// dests and weights differ in length.
    WeightVecNotEqualSize,
    /// A uid twice.
    DuplicateUids,
    /// Wrong commit-reveal version.
    IncorrectCommitRevealVersion,
}

/// The outer event enum.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum RuntimeEvent {
    /// System (pallet 0).
    #[codec(index = 0)]
    System(SystemEvent),
    /// SubtensorModule (pallet 7).
    #[codec(index = 7)]
    SubtensorModule(SubtensorEvent),
}

/// The outer error enum.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum RuntimeError {
    /// SubtensorModule (pallet 7).
    #[codec(index = 7)]
    SubtensorModule(SubtensorError),
}

/// `Phase` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum Phase {
    /// During extrinsic `n` of the block.
    ApplyExtrinsic(u32),
    /// Finalization.
    Finalization,
    /// Initialization.
    Initialization,
}

/// `EventRecord` (what `System.Events` holds).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct EventRecord {
    /// When.
    pub phase: Phase,
    /// What.
    pub event: RuntimeEvent,
    /// Topics.
    pub topics: Vec<H256>,
}

/// `sp_runtime::generic::Era`: `Immortal` (one 0 byte) or `MortalN(u8)` (two bytes), as the
/// real type's 256 variants.
pub struct Era;

impl TypeInfo for Era {
    type Identity = Self;
    fn type_info() -> Type {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        // Variant names must be 'static; 255 short strings leaked once per process.
        let names = NAMES.get_or_init(|| {
            (1..=255u16)
                .map(|i| &*Box::leak(format!("Mortal{i}").into_boxed_str()))
                .collect()
        });
        let mut variants = Variants::new().variant("Immortal", |v| v.index(0));
        for (i, name) in names.iter().copied().enumerate() {
            let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
            variants = variants.variant(name, |v| {
                v.index(index)
                    .fields(scale_info::build::Fields::unnamed().field(|f| f.ty::<u8>()))
            });
        }
        Type::builder()
            .path(Path::new("Era", "sp_runtime::generic::era"))
            .variant(variants)
    }
}

/// `MultiAddress<AccountId32, ()>`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum MultiAddress {
    /// An account id.
    Id(AccountId32),
    /// An account index.
    Index(#[codec(compact)] u32),
    /// Raw bytes.
    Raw(Vec<u8>),
    /// 32 bytes.
    Address32([u8; 32]),
    /// 20 bytes.
    Address20([u8; 20]),
}

/// `MultiSignature`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum MultiSignature {
    /// Ed25519.
    Ed25519([u8; 64]),
    /// Sr25519 (what hotkeys sign with).
    Sr25519([u8; 64]),
    /// ECDSA.
    Ecdsa([u8; 65]),
}

/// `CheckMortality(Era)`.
#[derive(TypeInfo)]
pub struct CheckMortality(pub Era);
/// `CheckNonce(Compact<u32>)`.
#[derive(TypeInfo)]
pub struct CheckNonce(#[codec(compact)] pub u32);
/// `ChargeTransactionPayment(Compact<u64>)` (the tip).
#[derive(TypeInfo)]
pub struct ChargeTransactionPayment(#[codec(compact)] pub u64);
/// `CheckMetadataHash { mode }`.
#[derive(TypeInfo)]
pub struct CheckMetadataHash {
    /// Whether the metadata hash is checked.
    pub mode: Mode,
}
/// `frame_metadata_hash_extension::Mode`.
#[derive(TypeInfo)]
pub enum Mode {
    /// Not checked (what attesta sends).
    Disabled,
    /// Checked.
    Enabled,
}
/// Extensions that carry nothing.
#[derive(TypeInfo)]
pub struct CheckNonZeroSender;
/// See [`CheckNonZeroSender`].
#[derive(TypeInfo)]
pub struct CheckSpecVersion;
/// See [`CheckNonZeroSender`].
#[derive(TypeInfo)]
pub struct CheckTxVersion;
/// See [`CheckNonZeroSender`].
#[derive(TypeInfo)]
pub struct CheckGenesis;
/// See [`CheckNonZeroSender`].
#[derive(TypeInfo)]
pub struct CheckWeight;
/// See [`CheckNonZeroSender`].
#[derive(TypeInfo)]
pub struct SubtensorTransactionExtension;

/// The runtime's marker type.
#[derive(TypeInfo)]
pub struct Runtime;

fn ext<T: TypeInfo + 'static, A: TypeInfo + 'static>(
    identifier: &'static str,
) -> SignedExtensionMetadata {
    SignedExtensionMetadata {
        identifier,
        ty: meta_type::<T>(),
        additional_signed: meta_type::<A>(),
    }
}

fn map(
    name: &'static str,
    hashers: Vec<StorageHasher>,
    key: MetaType,
    value: MetaType,
    default: Vec<u8>,
) -> StorageEntryMetadata {
    StorageEntryMetadata {
        name,
        modifier: StorageEntryModifier::Default,
        ty: StorageEntryType::Map {
            hashers,
            key,
            value,
        },
        default,
        docs: vec![],
    }
}

fn plain(name: &'static str, value: MetaType, default: Vec<u8>) -> StorageEntryMetadata {
    StorageEntryMetadata {
        name,
        modifier: StorageEntryModifier::Default,
        ty: StorageEntryType::Plain(value),
        default,
        docs: vec![],
    }
}

fn constant<T: TypeInfo + Encode + 'static>(name: &'static str, v: T) -> PalletConstantMetadata {
    PalletConstantMetadata {
        name,
        ty: meta_type::<T>(),
        value: v.encode(),
        docs: vec![],
    }
}

/// The signed extensions, in the order a v4 extrinsic carries them.
pub const EXTENSIONS: [&str; 9] = [
    "CheckNonZeroSender",
    "CheckSpecVersion",
    "CheckTxVersion",
    "CheckGenesis",
    "CheckMortality",
    "CheckNonce",
    "CheckWeight",
    "ChargeTransactionPayment",
    "CheckMetadataHash",
];

/// The stand-in's metadata, `meta`-prefixed SCALE (what `state_getMetadata` returns).
pub fn devnet_metadata() -> Vec<u8> {
    use StorageHasher::{Blake2_128Concat, Identity, Twox64Concat};
    let u16_ = meta_type::<u16>;
    let u64_ = meta_type::<u64>;
    let subtensor_storage = vec![
        map("Tempo", vec![Identity], u16_(), u16_(), 360u16.encode()),
        map("SubnetworkN", vec![Identity], u16_(), u16_(), 0u16.encode()),
        map(
            "ServingRateLimit",
            vec![Identity],
            u16_(),
            u64_(),
            50u64.encode(),
        ),
        map(
            "WeightsVersionKey",
            vec![Identity],
            u16_(),
            u64_(),
            0u64.encode(),
        ),
        map(
            "WeightsSetRateLimit",
            vec![Identity],
            u16_(),
            u64_(),
            100u64.encode(),
        ),
        map(
            "CommitRevealWeightsEnabled",
            vec![Identity],
            u16_(),
            meta_type::<bool>(),
            true.encode(),
        ),
        StorageEntryMetadata {
            name: "Uids",
            modifier: StorageEntryModifier::Optional,
            ty: StorageEntryType::Map {
                hashers: vec![Identity, Blake2_128Concat],
                key: meta_type::<(u16, AccountId32)>(),
                value: u16_(),
            },
            default: vec![0],
            docs: vec![],
        },
        map(
            "Keys",
            vec![Identity, Identity],
            meta_type::<(u16, u16)>(),
            meta_type::<AccountId32>(),
            [0u8; 32].encode(),
        ),
        map(
            "LastUpdate",
            vec![Identity],
            u16_(),
            meta_type::<Vec<u64>>(),
            Vec::<u64>::new().encode(),
        ),
        map(
            "Axons",
            vec![Identity, Blake2_128Concat],
            meta_type::<(u16, AccountId32)>(),
            meta_type::<AxonInfo>(),
            AxonInfo::default().encode(),
        ),
        map(
            "TimelockedWeightCommits",
            vec![Twox64Concat, Twox64Concat],
            meta_type::<(u16, u64)>(),
            meta_type::<Vec<(AccountId32, u64, Vec<u8>, u64)>>(),
            Vec::<u8>::new().encode(),
        ),
        map(
            "RevealPeriodEpochs",
            vec![Twox64Concat],
            u16_(),
            u64_(),
            1u64.encode(),
        ),
        plain("CommitRevealWeightsVersion", u16_(), 4u16.encode()),
    ];
    let system = PalletMetadata {
        name: "System",
        storage: Some(PalletStorageMetadata {
            prefix: "System",
            entries: vec![
                plain("Number", meta_type::<u32>(), 0u32.encode()),
                plain(
                    "Events",
                    meta_type::<Vec<EventRecord>>(),
                    Vec::<u8>::new().encode(),
                ),
            ],
        }),
        calls: None,
        event: Some(PalletEventMetadata {
            ty: meta_type::<SystemEvent>(),
        }),
        constants: vec![constant("SS58Prefix", 42u16)],
        error: None,
        index: 0,
        docs: vec![],
    };
    let subtensor = PalletMetadata {
        name: "SubtensorModule",
        storage: Some(PalletStorageMetadata {
            prefix: "SubtensorModule",
            entries: subtensor_storage,
        }),
        calls: Some(PalletCallMetadata {
            ty: meta_type::<SubtensorCall>(),
        }),
        event: Some(PalletEventMetadata {
            ty: meta_type::<SubtensorEvent>(),
        }),
        constants: vec![
            constant("InitialTempo", 360u16),
            constant("InitialServingRateLimit", 50u64),
        ],
        error: Some(PalletErrorMetadata {
            ty: meta_type::<SubtensorError>(),
        }),
        index: 7,
        docs: vec![],
    };
    let extensions = vec![
        ext::<CheckNonZeroSender, ()>(EXTENSIONS[0]),
        ext::<CheckSpecVersion, u32>(EXTENSIONS[1]),
        ext::<CheckTxVersion, u32>(EXTENSIONS[2]),
        ext::<CheckGenesis, H256>(EXTENSIONS[3]),
        ext::<CheckMortality, H256>(EXTENSIONS[4]),
        ext::<CheckNonce, ()>(EXTENSIONS[5]),
        ext::<CheckWeight, ()>(EXTENSIONS[6]),
        ext::<ChargeTransactionPayment, ()>(EXTENSIONS[7]),
        ext::<CheckMetadataHash, Option<[u8; 32]>>(EXTENSIONS[8]),
    ];
    let apis = vec![
        RuntimeApiMetadata {
            name: "NeuronInfoRuntimeApi",
            methods: vec![RuntimeApiMethodMetadata {
                name: "get_neurons_lite",
                inputs: vec![RuntimeApiMethodParamMetadata {
                    name: "netuid",
                    ty: u16_(),
                }],
                output: meta_type::<Vec<NeuronInfoLite>>(),
                docs: vec![],
            }],
            docs: vec![],
        },
        RuntimeApiMetadata {
            name: "Metadata",
            methods: vec![RuntimeApiMethodMetadata {
                name: "metadata_at_version",
                inputs: vec![RuntimeApiMethodParamMetadata {
                    name: "version",
                    ty: meta_type::<u32>(),
                }],
                output: meta_type::<Option<Vec<u8>>>(),
                docs: vec![],
            }],
            docs: vec![],
        },
    ];
    let metadata = RuntimeMetadataV15::new(
        vec![system, subtensor],
        ExtrinsicMetadata {
            version: 4,
            address_ty: meta_type::<MultiAddress>(),
            call_ty: meta_type::<RuntimeCall>(),
            signature_ty: meta_type::<MultiSignature>(),
            extra_ty: meta_type::<(
                CheckNonZeroSender,
                CheckSpecVersion,
                CheckTxVersion,
                CheckGenesis,
                CheckMortality,
                CheckNonce,
                CheckWeight,
                ChargeTransactionPayment,
                CheckMetadataHash,
            )>(),
            signed_extensions: extensions,
        },
        meta_type::<Runtime>(),
        apis,
        OuterEnums {
            call_enum_ty: meta_type::<RuntimeCall>(),
            event_enum_ty: meta_type::<RuntimeEvent>(),
            error_enum_ty: meta_type::<RuntimeError>(),
        },
        CustomMetadata {
            map: Default::default(),
        },
    );
    RuntimeMetadataPrefixed::from(metadata).encode()
}
