//! Every integration test of attesta-node in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-node --test it <file>::`.

mod cache;
mod endorse;
mod errors;
mod http_limits;
mod llm_api;
mod loading;
mod probe_process;
mod support;
mod transport;
