//! AWS Nitro Enclaves attestation documents (and dev documents in the same format).

pub(crate) mod cache;
pub(crate) mod certs;
pub mod cose;
pub mod document;
mod verifier;

pub use verifier::{Expected, NitroVerifier, Verification, VerifiedDocument};
