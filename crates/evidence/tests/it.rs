//! Every integration test of attesta-evidence in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-evidence --test it <file>::`.

mod common;
mod dcap_fixtures;
mod dcap_mutations;
mod error_sources;
mod mutations;
mod nitro_fixtures;
mod regressions;
mod snp_fixtures;
