//! Every integration test of attesta-client in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-client --test it <file>::`.

mod channel_e2e;
mod kds;
mod pcs_client;
