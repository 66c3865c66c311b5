//! The axon must answer every request without panicking, with a 4xx for anything the
//! caller got wrong: fuzzed header values and bodies, both unsigned (parsing) and
//! correctly signed by a dev key (so the JSON body, field and relay paths are reached
//! too). The node it relays to is unreachable, so a well-formed call ends in 502.
//!
//! Input: fields separated by 0x00 — synapse name, nonce offset, uuid, body, then
//! optional raw overrides for the signature, hotkey, body hash and timeout headers.
#![no_main]

use std::sync::{Arc, OnceLock};

use attesta_bittensor::synapse::{Synapse, header as h, signed_message};
use attesta_bittensor::{AxonConfig, CallerPolicy, Hotkey, router};
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    caller: Hotkey,
    axon: Hotkey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let caller = Hotkey::from_dev_uri("//Alice").expect("dev key");
        let axon = Hotkey::from_dev_uri("//Bob").expect("dev key");
        let mut config =
            AxonConfig::new(axon.clone(), "http://127.0.0.1:1", CallerPolicy::AnyCaller);
        config.node_timeout = std::time::Duration::from_millis(200);
        // A fixed clock: nonces near it are fresh, so fuzzed offsets reach both sides.
        config.clock = Arc::new(|| 1_700_000_000_000_000_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let app = router(config).expect("router");
        Fixture {
            rt,
            app,
            caller,
            axon,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut parts = data.split(|b| *b == 0);
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let offset = parts.next().unwrap_or_default();
    let uuid = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let overrides: Vec<&[u8]> = parts.collect();

    let delta = offset
        .iter()
        .fold(0i64, |a, b| a.wrapping_mul(31).wrapping_add(i64::from(*b)));
    let nonce = 1_700_000_000_000_000_000u64.wrapping_add_signed(delta % 20_000_000_000);
    let synapse = Synapse::from_name(&name).unwrap_or(Synapse::TeeAttestation);
    // Sign what the axon will hash when the body carries the field as a string.
    let value = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get(synapse.hashed_field())
                .and_then(|s| s.as_str().map(str::to_owned))
        })
        .unwrap_or_default();
    let body_hash = synapse.body_hash(&value);
    let message = signed_message(
        nonce,
        &f.caller.account(),
        &f.axon.account(),
        &uuid,
        &body_hash,
    );
    let signature = f.caller.sign(message.as_bytes()).to_header();

    let mut req = Request::post(format!("/{}", name.escape_default()))
        .header(h::DENDRITE_HOTKEY, f.caller.account().to_ss58())
        .header(h::DENDRITE_NONCE, nonce.to_string())
        .header(h::AXON_HOTKEY, f.axon.account().to_ss58());
    let names = [
        h::DENDRITE_SIGNATURE,
        h::DENDRITE_HOTKEY,
        h::COMPUTED_BODY_HASH,
        h::TIMEOUT,
    ];
    let defaults = [
        signature,
        f.caller.account().to_ss58(),
        body_hash,
        "12.0".to_owned(),
    ];
    for (i, (hname, default)) in names.iter().zip(defaults).enumerate() {
        match overrides.get(i) {
            Some(raw) => {
                if let Ok(v) = axum::http::HeaderValue::from_bytes(raw) {
                    req = req.header(*hname, v);
                }
            }
            None => req = req.header(*hname, default),
        }
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&uuid) {
        req = req.header(h::DENDRITE_UUID, v);
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    let resp =
        f.rt.block_on(f.app.clone().oneshot(req))
            .expect("infallible");
    let status = resp.status().as_u16();
    // 502/504: the unreachable node; 503: the nonce store is full. Anything else 5xx is a bug.
    assert!(
        status < 500 || matches!(status, 502 | 503 | 504),
        "axon answered {status}"
    );
});
