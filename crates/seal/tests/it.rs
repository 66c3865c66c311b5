//! Every integration test of attesta-seal in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-seal --test it <file>::`.

mod binding;
mod bundle;
mod channel;
mod common;
mod decoders;
mod receipt;
mod replay;
mod stream;
mod stream_vectors;
mod vectors;
