//! The SDK's axon/dendrite wire format (unchanged from SDK 7.2.0 to 10.5.0) and attesta's
//! synapses.
//!
//! A call is `POST /<SynapseName>` with the whole synapse as a JSON body and lowercase
//! headers: `name`, `timeout`, `bt_header_axon_{ip,port,hotkey}`,
//! `bt_header_dendrite_{ip,version,nonce,uuid,hotkey,signature}`,
//! `bt_header_input_obj_<field>`, `header_size`, `total_size`, `computed_body_hash`. The
//! dendrite signs `"{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}"` (sr25519,
//! context `substrate`).

use crate::pyrepr;
use crate::ss58::AccountId;

/// The SDK version our dendrite announces (10.5.0, the last SDK with axon/dendrite).
pub const SDK_VERSION: u64 = 10_005_000;

/// SDK version from which a first nonce must also be fresh (7.2.0).
pub const V_7_2_0: u64 = 7_002_000;

/// Header names (lowercase, as the SDK sends and expects them).
pub mod header {
    /// The synapse name.
    pub const NAME: &str = "name";
    /// The dendrite's timeout in seconds (float text).
    pub const TIMEOUT: &str = "timeout";
    /// The axon hotkey the dendrite addressed (SS58).
    pub const AXON_HOTKEY: &str = "bt_header_axon_hotkey";
    /// The axon IP the dendrite addressed.
    pub const AXON_IP: &str = "bt_header_axon_ip";
    /// The axon port the dendrite addressed.
    pub const AXON_PORT: &str = "bt_header_axon_port";
    /// The axon's status code (a Python dendrite needs it, lowercase, to count success).
    pub const AXON_STATUS_CODE: &str = "bt_header_axon_status_code";
    /// The axon's status message.
    pub const AXON_STATUS_MESSAGE: &str = "bt_header_axon_status_message";
    /// Seconds the axon spent.
    pub const AXON_PROCESS_TIME: &str = "bt_header_axon_process_time";
    /// The dendrite's reported IP (informational only).
    pub const DENDRITE_IP: &str = "bt_header_dendrite_ip";
    /// The dendrite's SDK version as an integer (10.5.0 → 10005000).
    pub const DENDRITE_VERSION: &str = "bt_header_dendrite_version";
    /// The dendrite's nonce (wall-clock nanoseconds).
    pub const DENDRITE_NONCE: &str = "bt_header_dendrite_nonce";
    /// The dendrite's uuid.
    pub const DENDRITE_UUID: &str = "bt_header_dendrite_uuid";
    /// The dendrite's hotkey (SS58).
    pub const DENDRITE_HOTKEY: &str = "bt_header_dendrite_hotkey";
    /// The dendrite's signature (`0x` + 128 hex).
    pub const DENDRITE_SIGNATURE: &str = "bt_header_dendrite_signature";
    /// The body hash the dendrite signed.
    pub const COMPUTED_BODY_HASH: &str = "computed_body_hash";
    /// Prefix of the per-field type hints (`bt_header_input_obj_<field>`).
    pub const INPUT_OBJ_PREFIX: &str = "bt_header_input_obj_";
    /// Header size as the SDK reports it (informational).
    pub const HEADER_SIZE: &str = "header_size";
    /// Total size as the SDK reports it (informational).
    pub const TOTAL_SIZE: &str = "total_size";
}

/// attesta's synapses. Names and fields are fixed: Python validators define the same
/// classes (`python/attesta_bittensor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Synapse {
    /// Request `nonce: str` (hex, 16..=64 bytes); response `platform`, `evidence`
    /// (base64 of the node's evidence), `keyset` (dict). Hashed field: `nonce`.
    TeeAttestation,
    /// Request `sealed_request: str` (base64 of a `/v1/infer` envelope); response
    /// `sealed_response: str` (base64). Hashed field: `sealed_request`.
    TeeInference,
    /// Request `sealed_request: str` (base64 of a sealed `/v1/completions` request);
    /// response `sealed_stream: str` (base64 of the node's whole sealed stream), or
    /// `sealed_response: str` (base64 of the single sealed envelope of the node's verdict).
    /// Hashed field: `sealed_request`. A synapse is one request and one response: the
    /// stream arrives at once, when the node has finished it.
    TeeCompletion,
    /// [`Synapse::TeeCompletion`] for `/v1/chat/completions`.
    TeeChatCompletion,
}

impl Synapse {
    /// Every synapse, for routing.
    pub const ALL: [Synapse; 4] = [
        Synapse::TeeAttestation,
        Synapse::TeeInference,
        Synapse::TeeCompletion,
        Synapse::TeeChatCompletion,
    ];

    /// The route and `name`.
    pub fn name(self) -> &'static str {
        match self {
            Synapse::TeeAttestation => "TeeAttestation",
            Synapse::TeeInference => "TeeInference",
            Synapse::TeeCompletion => "TeeCompletion",
            Synapse::TeeChatCompletion => "TeeChatCompletion",
        }
    }

    /// The synapse's only `required_hash_fields` entry, also its only request field.
    pub fn hashed_field(self) -> &'static str {
        match self {
            Synapse::TeeAttestation => "nonce",
            Synapse::TeeInference | Synapse::TeeCompletion | Synapse::TeeChatCompletion => {
                "sealed_request"
            }
        }
    }

    /// The response fields the axon fills (absent ones are `null`).
    pub fn response_fields(self) -> &'static [&'static str] {
        match self {
            Synapse::TeeAttestation => &["platform", "evidence", "keyset"],
            Synapse::TeeInference => &["sealed_response"],
            Synapse::TeeCompletion | Synapse::TeeChatCompletion => {
                &["sealed_stream", "sealed_response"]
            }
        }
    }

    /// The node route a language-model synapse relays to (`None` for the others).
    pub fn completion_route(self) -> Option<&'static str> {
        match self {
            Synapse::TeeCompletion => Some("/v1/completions"),
            Synapse::TeeChatCompletion => Some("/v1/chat/completions"),
            Synapse::TeeAttestation | Synapse::TeeInference => None,
        }
    }

    /// The language-model synapse relaying to `route` (`None` for any other route).
    pub fn for_completion_route(route: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.completion_route() == Some(route))
    }

    /// The synapse named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The body hash of a request whose hashed field holds the string `value`
    /// (`str()` of a `str` is the string itself).
    pub fn body_hash(self, value: &str) -> String {
        pyrepr::body_hash([value])
    }
}

/// The message a dendrite signs.
pub fn signed_message(
    nonce: u64,
    dendrite: &AccountId,
    axon: &AccountId,
    uuid: &str,
    body_hash: &str,
) -> String {
    format!("{nonce}.{dendrite}.{axon}.{uuid}.{body_hash}")
}

/// `bt_header_input_obj_<field>` value for a `str` field: base64 of the JSON `""`, the
/// empty instance the SDK sends so a Python axon can rebuild the synapse's types.
pub const INPUT_OBJ_STR: &str = "IiI=";
