//! Every integration test of attesta-engine in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-engine --test it <file>::`.

mod cancel;
mod concurrency;
mod conformance;
mod fixtures;
mod hostile;
mod if_recurrent;
mod int_reductions;
mod og_scan;
mod plans;
mod registry;
mod request_sizes;
mod support;
