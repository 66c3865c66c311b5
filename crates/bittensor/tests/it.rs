//! Every integration test of attesta-bittensor in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-bittensor --test it <file>::`.

mod axon;
mod chain_callers;
mod chain_extrinsic;
mod chain_metadata;
mod chain_recorded;
mod chain_reveal;
mod chain_rpc;
mod chain_standin;
mod chain_tlock;
mod chain_write;
mod fixtures;
mod wallet;
