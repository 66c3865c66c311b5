//! Subtensor chain: the write side (signed extrinsics, commit-reveal weights, axon
//! announcements).

pub mod extrinsic;
pub mod reveal;
pub mod tlock;
