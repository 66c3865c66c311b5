//! The attesta validator: challenge nodes round after round, verify their
//! attestation and answers, score them with Omron's curve, persist
//! everything in SQLite and emit weights.
//!
//! Layers: [`registry`] (who), [`challenge`] (what to ask, and the expected
//! answer), [`probe`] (one node's attested channel, as a trait), [`round`]
//! (bounded concurrency, timeouts), [`scoring`] (pure maths), [`state`]
//! (SQLite, crash-safe), [`llm_challenge`] (language-model challenges checked by
//! one teacher-forced pass), [`weights`] (sinks), [`leaderboard`] and
//! [`metrics`] joined in [`status`], served by [`http`] (`/v1/nodes`,
//! `/metrics`), [`runner`] (the loop).
#![forbid(unsafe_code)]

pub mod axon_transport;
pub mod chain_sink;
pub mod challenge;
pub mod client_channel;
pub mod config;
pub mod gateway;
pub mod http;
pub mod leaderboard;
pub mod llm_challenge;
pub mod metagraph;
pub mod metrics;
pub mod probe;
pub mod registry;
pub mod round;
pub mod runner;
pub mod scoring;
pub mod service;
pub mod state;
pub mod status;
pub mod weights;

pub use runner::{Parts, RoundError, RoundSummary, Validator, ValidatorRng, os_rng};
