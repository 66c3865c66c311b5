//! Every integration test of attesta-gguf in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-gguf --test it <file>::`.

mod common;
mod gguf_read;
mod mutations;
mod template;
mod test_models;
mod tokenizer_oracle;
mod tokenizer_special;
mod tokenizer_vectors;
