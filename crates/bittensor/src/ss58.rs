//! SS58 addresses with Bittensor's prefix 42 (the generic Substrate prefix).
//!
//! `base58(prefix ‖ account(32) ‖ checksum(2))`, where the checksum is the first two
//! bytes of BLAKE2b-512(`"SS58PRE"` ‖ prefix ‖ account). Only the one-byte prefix 42 is
//! accepted: an address for another network is an error, not a silent conversion.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2b512, Digest};

/// The SS58 network prefix Bittensor uses (`substrate` generic).
pub const SS58_PREFIX: u8 = 42;

/// A 32-byte account (an sr25519 public key), shown as its SS58 address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 32]);

/// Why a string is not an SS58 address of prefix 42.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ss58Error {
    /// Not base58.
    #[error("not base58: {0}")]
    Base58(#[source] bs58::decode::Error),
    /// Decoded to the wrong number of bytes (35 expected).
    #[error("SS58 address decodes to {0} bytes, 35 expected")]
    Length(usize),
    /// A prefix other than 42.
    #[error("SS58 prefix {0} is not Bittensor's (42)")]
    Prefix(u8),
    /// The two checksum bytes do not match.
    #[error("SS58 checksum mismatch")]
    Checksum,
}

fn checksum(body: &[u8]) -> [u8; 2] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(body);
    let d = h.finalize();
    [d[0], d[1]]
}

impl AccountId {
    /// The SS58 (prefix 42) text of this account.
    pub fn to_ss58(&self) -> String {
        let mut raw = Vec::with_capacity(35);
        raw.push(SS58_PREFIX);
        raw.extend_from_slice(&self.0);
        let sum = checksum(&raw);
        raw.extend_from_slice(&sum);
        bs58::encode(raw).into_string()
    }

    /// Parses an SS58 address of prefix 42.
    pub fn from_ss58(text: &str) -> Result<Self, Ss58Error> {
        let raw = bs58::decode(text.trim())
            .into_vec()
            .map_err(Ss58Error::Base58)?;
        let raw: [u8; 35] = raw
            .as_slice()
            .try_into()
            .map_err(|_| Ss58Error::Length(raw.len()))?;
        let [prefix, body @ .., c0, c1] = raw;
        if prefix != SS58_PREFIX {
            return Err(Ss58Error::Prefix(prefix));
        }
        let mut signed = [0u8; 33];
        signed[0] = prefix;
        signed[1..].copy_from_slice(&body);
        if checksum(&signed) != [c0, c1] {
            return Err(Ss58Error::Checksum);
        }
        Ok(AccountId(body))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.to_ss58())
    }
}

impl FromStr for AccountId {
    type Err = Ss58Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::from_ss58(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn round_trips_and_refuses_tampering() {
        let a = AccountId::from_ss58(ALICE).unwrap();
        assert_eq!(
            hex::encode(a.0),
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
        assert_eq!(a.to_ss58(), ALICE);
        // One changed character breaks the checksum (or the base58 text).
        let bad = ALICE.replacen('G', "H", 1);
        assert!(AccountId::from_ss58(&bad).is_err());
        // Polkadot's prefix 0 for the same key is refused, not converted.
        let mut raw = vec![0u8];
        raw.extend_from_slice(&a.0);
        let sum = checksum(&raw);
        raw.extend_from_slice(&sum);
        let polkadot = bs58::encode(raw).into_string();
        assert_eq!(AccountId::from_ss58(&polkadot), Err(Ss58Error::Prefix(0)));
        assert!(matches!(
            AccountId::from_ss58("abc"),
            Err(Ss58Error::Length(_))
        ));
        assert!(matches!(
            AccountId::from_ss58("0OIl"),
            Err(Ss58Error::Base58(_))
        ));
    }
}
