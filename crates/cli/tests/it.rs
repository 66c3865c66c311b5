//! Every integration test of attesta-cli in one test binary. Each test binary links the
//! whole dependency tree (tract, candle, the HTTP stack), so one binary per file meant
//! one such link per file and filled CI's disk; one binary keeps the test build inside
//! CI's disk and time. Run one file's tests with `cargo test -p attesta-cli --test it <file>::`.

mod attested_e2e;
mod axon_announce;
mod bittensor_interop;
mod chat_e2e;
mod dcap_cli;
mod dcap_e2e;
mod deploy_recipes;
mod devnet_crash;
mod devnet_dead_node;
mod devnet_e2e;
mod engine_e2e;
mod faults_e2e;
mod gateway_e2e;
mod ipfs_e2e;
mod load_budget_e2e;
mod measure_eif;
mod nitro_proxy_e2e;
mod node_e2e;
mod snp_e2e;
mod support;
