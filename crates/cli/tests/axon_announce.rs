//! `attesta axon --announce` against the JSON-RPC chain stand-in (with its write handler):
//! a registered hotkey's axon shows up in the metagraph; a restart with the same address
//! sends nothing; an unregistered hotkey exits with status 4 before serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use attesta_bittensor::Hotkey;
use attesta_bittensor::chain::standin::{NeuronSpec, Standin, StandinConfig, writes};
use support::*;

fn standin(rt: &tokio::runtime::Runtime, register: &[&str]) -> Standin {
    let s = rt
        .block_on(Standin::start(StandinConfig::devnet()))
        .unwrap();
    s.set_extrinsic_handler(writes::handler());
    for uri in register {
        let k = Hotkey::from_dev_uri(uri).unwrap().account();
        s.register(
            1,
            NeuronSpec {
                hotkey: k,
                coldkey: k,
                axon: None,
                validator_permit: false,
                stake: 1,
            },
        );
    }
    s
}

fn axon_args(url: &str) -> Vec<String> {
    [
        "axon",
        "--node",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--hotkey-uri",
        "//Alice",
        "--allow-any-caller",
        "--chain-endpoint",
        url,
        "--netuid",
        "1",
        "--announce",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn announce_puts_the_axon_in_the_metagraph_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = standin(&rt, &["//Alice"]);
    let mut cmd = attesta();
    cmd.args(axon_args(&s.url()));
    let (p, lines) = spawn_reporting(cmd, "axon", 3);
    let addr: std::net::SocketAddr = lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        lines[2].starts_with(&format!("announced {addr} on netuid 1")),
        "{lines:?}"
    );
    let info = s.with_state(|st| st.neurons[&1][0].axon_info);
    assert_eq!(info.socket_addr(), Some(addr));
    assert_eq!(info.ip_type, 4);
    drop(p);

    // The same address again (explicit external port): nothing is sent.
    let sent = s.extrinsics().len();
    let mut cmd = attesta();
    cmd.args(axon_args(&s.url())).args([
        "--external-ip",
        "127.0.0.1",
        "--external-port",
        &addr.port().to_string(),
    ]);
    let (p, lines) = spawn_reporting(cmd, "axon", 3);
    assert!(lines[2].contains("already announced"), "{lines:?}");
    assert_eq!(s.extrinsics().len(), sent);
    drop(p);

    // Another port within the serving rate limit: delayed, not sent now.
    let mut cmd = attesta();
    cmd.args(axon_args(&s.url()))
        .args(["--external-ip", "127.0.0.1", "--external-port", "1"]);
    let (p, lines) = spawn_reporting(cmd, "axon", 3);
    assert!(lines[2].starts_with("serving rate limit"), "{lines:?}");
    assert_eq!(s.extrinsics().len(), sent);
    drop(p);
}

#[test]
fn an_unregistered_hotkey_exits_with_status_4() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = standin(&rt, &["//Bob"]);
    let args = axon_args(&s.url());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run_status(&args);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not registered on netuid 1"), "{stderr}");
    assert!(s.extrinsics().is_empty());
    // --announce on an unspecified listen address needs the public IP: a usage error.
    let mut args = args.clone();
    let i = args.iter().position(|a| *a == "127.0.0.1:0").unwrap();
    args[i] = "0.0.0.0:0";
    let (code, _, stderr) = run_status(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--external-ip"), "{stderr}");
}
