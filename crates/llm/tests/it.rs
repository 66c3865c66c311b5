//! Every integration test of attesta-llm in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-llm --test it <file>::`.

mod engine;
mod exact_check;
mod llama_cpp;
mod oracle;
