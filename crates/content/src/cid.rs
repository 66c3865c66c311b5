//! Content identifiers: CIDv0 and CIDv1 with dag-pb or raw codecs over sha2-256.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::multibase;
use crate::varint;

/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of raw bytes.
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// Why a CID string or byte sequence was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// Empty input.
    #[error("empty CID")]
    Empty,
    /// The multibase prefix is not one we accept (`Qm…`, `b…`, `z…`).
    #[error("unsupported multibase prefix {0:?}")]
    UnsupportedMultibase(char),
    /// The text is not valid in its multibase alphabet.
    #[error("invalid multibase encoding")]
    InvalidEncoding,
    /// A CID version other than 0 or 1.
    #[error("unsupported CID version {0}")]
    UnsupportedVersion(u64),
    /// A content codec other than dag-pb (0x70) or raw (0x55).
    #[error("unsupported codec 0x{0:x} (only dag-pb and raw)")]
    UnsupportedCodec(u64),
    /// A multihash other than sha2-256.
    #[error("unsupported multihash 0x{0:x} (only sha2-256)")]
    UnsupportedHash(u64),
    /// The digest length does not match sha2-256.
    #[error("digest length {0} is not 32")]
    BadDigestLength(u64),
    /// The bytes end early or a varint is malformed.
    #[error("truncated or malformed CID bytes")]
    Malformed,
    /// Bytes left over after a complete CID.
    #[error("trailing bytes after CID")]
    TrailingBytes,
}

/// CID version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// Legacy: implicitly dag-pb + sha2-256, text is bare base58btc.
    V0,
    /// Self-describing version, codec is explicit.
    V1,
}

/// The codec of the block a CID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// dag-pb (UnixFS nodes).
    DagPb,
    /// Raw bytes (UnixFS raw leaves).
    Raw,
}

impl Codec {
    /// The multicodec number.
    pub fn code(self) -> u64 {
        match self {
            Codec::DagPb => DAG_PB,
            Codec::Raw => RAW,
        }
    }

    fn from_code(code: u64) -> Result<Self, CidError> {
        match code {
            DAG_PB => Ok(Codec::DagPb),
            RAW => Ok(Codec::Raw),
            other => Err(CidError::UnsupportedCodec(other)),
        }
    }
}

/// A sha2-256 CID (v0, or v1 with dag-pb or raw).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    version: Version,
    codec: Codec,
    digest: [u8; 32],
}

impl Cid {
    /// CIDv0 of a dag-pb block with this sha2-256 digest.
    pub fn v0(digest: [u8; 32]) -> Self {
        Cid {
            version: Version::V0,
            codec: Codec::DagPb,
            digest,
        }
    }

    /// CIDv1 with the given codec and sha2-256 digest.
    pub fn v1(codec: Codec, digest: [u8; 32]) -> Self {
        Cid {
            version: Version::V1,
            codec,
            digest,
        }
    }

    /// The CID of `block` with the same version and codec as `self` (hash it and compare to verify).
    pub fn with_same_prefix_for(&self, block: &[u8]) -> Self {
        Cid {
            version: self.version,
            codec: self.codec,
            digest: sha256(block),
        }
    }

    /// True when `block` hashes to this CID's digest.
    pub fn matches(&self, block: &[u8]) -> bool {
        sha256(block) == self.digest
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The sha2-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Binary form (as used in dag-pb links and CAR frames).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        if self.version == Version::V1 {
            varint::encode(1, &mut out);
            varint::encode(self.codec.code(), &mut out);
        }
        out.push(SHA2_256 as u8);
        out.push(32);
        out.extend_from_slice(&self.digest);
        out
    }

    /// Parses the binary form; the whole slice must be one CID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidError> {
        let (cid, used) = Self::read_bytes(bytes)?;
        if used != bytes.len() {
            return Err(CidError::TrailingBytes);
        }
        Ok(cid)
    }

    /// Parses a binary CID at the front of `bytes`, returning it and the bytes used.
    pub fn read_bytes(bytes: &[u8]) -> Result<(Self, usize), CidError> {
        let mut pos = 0usize;
        let next = |pos: &mut usize| -> Result<u64, CidError> {
            let rest = bytes.get(*pos..).ok_or(CidError::Malformed)?;
            let (v, n) = varint::decode(rest).map_err(|_| CidError::Malformed)?;
            *pos += n;
            Ok(v)
        };
        let (version, codec) =
            if bytes.first() == Some(&(SHA2_256 as u8)) && bytes.get(1) == Some(&32) {
                (Version::V0, Codec::DagPb)
            } else {
                match next(&mut pos)? {
                    1 => {}
                    0 | SHA2_256 => return Err(CidError::Malformed),
                    v => return Err(CidError::UnsupportedVersion(v)),
                }
                let codec = Codec::from_code(next(&mut pos)?)?;
                (Version::V1, codec)
            };
        let hash = next(&mut pos)?;
        if hash != SHA2_256 {
            return Err(CidError::UnsupportedHash(hash));
        }
        let len = next(&mut pos)?;
        if len != 32 {
            return Err(CidError::BadDigestLength(len));
        }
        let digest: [u8; 32] = bytes
            .get(pos..pos + 32)
            .and_then(|s| s.try_into().ok())
            .ok_or(CidError::Malformed)?;
        Ok((
            Cid {
                version,
                codec,
                digest,
            },
            pos + 32,
        ))
    }

    /// The same content named as CIDv1 (base32 text).
    pub fn to_v1(&self) -> Self {
        Cid {
            version: Version::V1,
            ..self.clone()
        }
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Version::V0 => f.write_str(&multibase::base58_encode(&self.to_bytes())),
            Version::V1 => {
                f.write_str("b")?;
                f.write_str(&multibase::base32_encode(&self.to_bytes()))
            }
        }
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = CidError;

    fn from_str(s: &str) -> Result<Self, CidError> {
        let first = s.chars().next().ok_or(CidError::Empty)?;
        if s.len() == 46 && s.starts_with("Qm") {
            let bytes = multibase::base58_decode(s).ok_or(CidError::InvalidEncoding)?;
            let cid = Cid::from_bytes(&bytes)?;
            return if cid.version == Version::V0 {
                Ok(cid)
            } else {
                Err(CidError::Malformed)
            };
        }
        let rest = s.get(first.len_utf8()..).ok_or(CidError::InvalidEncoding)?;
        let bytes = match first {
            'b' => multibase::base32_decode(rest),
            'z' => multibase::base58_decode(rest),
            other => return Err(CidError::UnsupportedMultibase(other)),
        }
        .ok_or(CidError::InvalidEncoding)?;
        let cid = Cid::from_bytes(&bytes)?;
        // A multibase-prefixed string must be v1; v0 bytes would have no prefix.
        if cid.version != Version::V1 {
            return Err(CidError::Malformed);
        }
        Ok(cid)
    }
}

impl serde::Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_cids_round_trip() {
        for s in [
            "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            "bafybeicqqpsudfblbjer72m5vzragvjxnpa7tv65nbz72epjrcxqm3jcs4",
        ] {
            let cid: Cid = s.parse().unwrap();
            assert_eq!(cid.to_string(), s);
            assert_eq!(Cid::from_bytes(&cid.to_bytes()).unwrap(), cid);
        }
    }

    #[test]
    fn base58_v1_input_is_accepted() {
        let cid: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let z = format!("z{}", multibase::base58_encode(&cid.to_bytes()));
        assert_eq!(z.parse::<Cid>().unwrap(), cid);
    }

    #[test]
    fn rejects_other_hashes_codecs_and_bases() {
        let mut v1 = vec![1u8, 0x71, 0x12, 32];
        v1.extend([7u8; 32]);
        assert_eq!(Cid::from_bytes(&v1), Err(CidError::UnsupportedCodec(0x71)));
        let mut blake = vec![1u8, 0x55, 0xa0, 0xe4, 0x02, 32];
        blake.extend([7u8; 32]);
        assert_eq!(
            Cid::from_bytes(&blake),
            Err(CidError::UnsupportedHash(0xb220))
        );
        let mut short = vec![1u8, 0x55, 0x12, 20];
        short.extend([7u8; 20]);
        assert_eq!(Cid::from_bytes(&short), Err(CidError::BadDigestLength(20)));
        let mut v2 = vec![2u8, 0x55, 0x12, 32];
        v2.extend([7u8; 32]);
        assert_eq!(Cid::from_bytes(&v2), Err(CidError::UnsupportedVersion(2)));
        assert_eq!(
            Cid::from_bytes(&[1, 0x55, 0x12, 32, 1]),
            Err(CidError::Malformed)
        );
        assert_eq!("".parse::<Cid>(), Err(CidError::Empty));
        assert_eq!(
            "mAXASIA".parse::<Cid>(),
            Err(CidError::UnsupportedMultibase('m'))
        );
        assert_eq!("b!!".parse::<Cid>(), Err(CidError::InvalidEncoding));
        let cid: Cid = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
            .parse()
            .unwrap();
        let mut trailing = cid.to_bytes();
        trailing.push(0);
        assert_eq!(Cid::from_bytes(&trailing), Err(CidError::TrailingBytes));
    }

    #[test]
    fn serde_as_string() {
        let cid: Cid = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
            .parse()
            .unwrap();
        let json = serde_json::to_string(&cid).unwrap();
        assert_eq!(json, "\"Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD\"");
        assert_eq!(serde_json::from_str::<Cid>(&json).unwrap(), cid);
        assert!(serde_json::from_str::<Cid>("\"Qmnope\"").is_err());
    }
}
