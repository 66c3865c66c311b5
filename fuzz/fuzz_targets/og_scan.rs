//! The `/infer` request decoder's single-pass fast path must agree with the
//! general decoder on every body: equal requests, or errors of the same kind
//! and message (and neither may panic).
#![no_main]

use attesta_engine::og::{parse_inputs, parse_inputs_general, parse_request, parse_request_general};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match (parse_request(data), parse_request_general(data)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => {
            assert_eq!(a.code(), b.code());
            assert_eq!(a.to_string(), b.to_string());
        }
        (a, b) => panic!("fast {a:?} vs general {b:?}"),
    }
    // The same bytes as `model_inputs` text on its own (the sealed path's entry).
    if let Ok(text) = std::str::from_utf8(data) {
        match (parse_inputs(text), parse_inputs_general(text)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("fast {a:?} vs general {b:?}"),
        }
    }
});
