//! The subnet's neurons from `NeuronInfoRuntimeApi_get_neurons_lite(netuid)`.
//!
//! The answer is SCALE `Vec<NeuronInfoLite>`; runtimes before the runtime APIs were typed
//! (spec ≤ ~2xx) wrapped it in a `Vec<u8>`. Both forms are read: the typed form first, and
//! the wrapped one only when the typed form does not consume the bytes exactly.

use parity_scale_codec::{Compact, Decode, Encode};
use scale_info::TypeInfo;

use crate::ss58::AccountId;

/// `AxonInfo` as stored on chain (`SubtensorModule.Axons`, and inside `NeuronInfoLite`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct AxonInfo {
    /// Block of the last `serve_axon`.
    pub block: u64,
    /// The axon's version.
    pub version: u32,
    /// IPv4 (a u32 value) or IPv6 address.
    pub ip: u128,
    /// TCP port.
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
    /// Protocol (unused by the SDK; 4).
    pub protocol: u8,
    /// Reserved.
    pub placeholder1: u8,
    /// Reserved.
    pub placeholder2: u8,
}

impl AxonInfo {
    /// The served address, or `None` when the axon is not served (ip 0 or port 0) or the ip
    /// does not fit its type.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        if self.ip == 0 || self.port == 0 {
            return None;
        }
        let ip: std::net::IpAddr = match self.ip_type {
            4 => std::net::Ipv4Addr::from(u32::try_from(self.ip).ok()?).into(),
            6 => std::net::Ipv6Addr::from(self.ip).into(),
            _ => return None,
        };
        Some(std::net::SocketAddr::new(ip, self.port))
    }
}

/// `PrometheusInfo` (read only to skip it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct PrometheusInfo {
    /// Block of the last `serve_prometheus`.
    pub block: u64,
    /// Version.
    pub version: u32,
    /// Address.
    pub ip: u128,
    /// Port.
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
}

/// `NeuronInfoLite<AccountId32>`, field for field as the runtime encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct NeuronInfoLite {
    /// Hotkey.
    pub hotkey: [u8; 32],
    /// Coldkey.
    pub coldkey: [u8; 32],
    /// Uid in the subnet.
    pub uid: Compact<u16>,
    /// The subnet.
    pub netuid: Compact<u16>,
    /// Active flag.
    pub active: bool,
    /// The axon.
    pub axon_info: AxonInfo,
    /// Prometheus endpoint.
    pub prometheus_info: PrometheusInfo,
    /// Stake per coldkey (rao).
    pub stake: Vec<([u8; 32], Compact<u64>)>,
    /// Rank.
    pub rank: Compact<u16>,
    /// Emission.
    pub emission: Compact<u64>,
    /// Incentive.
    pub incentive: Compact<u16>,
    /// Consensus.
    pub consensus: Compact<u16>,
    /// Trust.
    pub trust: Compact<u16>,
    /// Validator trust.
    pub validator_trust: Compact<u16>,
    /// Dividends.
    pub dividends: Compact<u16>,
    /// Block of the last weights.
    pub last_update: Compact<u64>,
    /// May set weights.
    pub validator_permit: bool,
    /// Pruning score.
    pub pruning_score: Compact<u16>,
}

/// One neuron of a subnet, as attesta uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neuron {
    /// Uid in the subnet.
    pub uid: u16,
    /// The subnet.
    pub netuid: u16,
    /// Hotkey (signs the axon's answers, the key of scores).
    pub hotkey: AccountId,
    /// Coldkey (owner).
    pub coldkey: AccountId,
    /// The served axon, `None` when not served.
    pub axon: Option<std::net::SocketAddr>,
    /// The raw axon record.
    pub axon_info: AxonInfo,
    /// May set weights (a validator).
    pub validator_permit: bool,
    /// Total stake in rao (saturating sum over coldkeys).
    pub stake: u64,
    /// Block of the neuron's last weights.
    pub last_update: u64,
}

impl From<NeuronInfoLite> for Neuron {
    fn from(n: NeuronInfoLite) -> Self {
        Neuron {
            uid: n.uid.0,
            netuid: n.netuid.0,
            hotkey: AccountId(n.hotkey),
            coldkey: AccountId(n.coldkey),
            axon: n.axon_info.socket_addr(),
            axon_info: n.axon_info,
            validator_permit: n.validator_permit,
            stake: n.stake.iter().fold(0u64, |a, (_, s)| a.saturating_add(s.0)),
            last_update: n.last_update.0,
        }
    }
}

/// Why a `get_neurons_lite` answer did not decode.
#[derive(Debug, thiserror::Error)]
#[error(
    "get_neurons_lite answer ({len} bytes) is neither Vec<NeuronInfoLite> nor Vec<u8> of it: {source}"
)]
pub struct NeuronsDecodeError {
    /// Bytes received.
    pub len: usize,
    /// The typed form's error.
    #[source]
    pub source: parity_scale_codec::Error,
}

fn decode_exact<T: Decode>(bytes: &[u8]) -> Result<T, parity_scale_codec::Error> {
    let mut input = bytes;
    let v = T::decode(&mut input)?;
    if input.is_empty() {
        Ok(v)
    } else {
        Err("trailing bytes".into())
    }
}

/// Decodes a `get_neurons_lite` answer (typed, or the older `Vec<u8>`-wrapped form).
/// Allocation is bounded by the input: every length is checked against the bytes left.
pub fn decode_neurons_lite(bytes: &[u8]) -> Result<Vec<NeuronInfoLite>, NeuronsDecodeError> {
    match decode_exact::<Vec<NeuronInfoLite>>(bytes) {
        Ok(v) => Ok(v),
        Err(source) => decode_exact::<Vec<u8>>(bytes)
            .and_then(|inner| decode_exact::<Vec<NeuronInfoLite>>(&inner))
            .map_err(|_| NeuronsDecodeError {
                len: bytes.len(),
                source,
            }),
    }
}

/// The neurons of a `get_neurons_lite` answer.
pub fn decode_neurons(bytes: &[u8]) -> Result<Vec<Neuron>, NeuronsDecodeError> {
    Ok(decode_neurons_lite(bytes)?
        .into_iter()
        .map(Neuron::from)
        .collect())
}

/// An IPv4 address as the chain stores it (a u32 value in the u128).
pub fn ipv4_to_u128(ip: std::net::Ipv4Addr) -> u128 {
    u128::from(u32::from(ip))
}
