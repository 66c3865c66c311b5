//! Every integration test of attesta-validator in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-validator --test it <file>::`.

mod chain_weights;
mod gateway_admission;
mod llm_challenges;
mod metagraph;
mod round_scheduling;
mod rounds_e2e;
