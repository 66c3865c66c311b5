//! Shared helpers: locating the real fixtures (missing = failure, never a skip).
#![allow(clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;

use attesta_evidence::UnixTime;

pub fn fixtures() -> PathBuf {
    attesta_test_support::fixtures()
}

pub fn read(rel: &str) -> Vec<u8> {
    attesta_test_support::read_fixture(rel)
}

pub fn at(rfc3339: &str) -> UnixTime {
    UnixTime::parse_rfc3339(rfc3339).expect("valid RFC 3339 in test")
}

/// A real document with its validity window (from the fixture README).
pub struct Doc {
    pub file: &'static str,
    pub timestamp_ms: u64,
    pub not_before: &'static str,
    pub leaf_not_after: &'static str,
    pub debug: bool,
}

pub const DOCS: [Doc; 3] = [
    Doc {
        file: "nitro/veracruz_2022-11-09_euw1.cbor",
        timestamp_ms: 1_668_034_320_696,
        not_before: "2022-11-09T22:51:57Z",
        leaf_not_after: "2022-11-10T01:52:00Z",
        debug: false,
    },
    Doc {
        file: "nitro/evervault_2023-09-18_debug.b64",
        timestamp_ms: 1_695_049_410_860,
        not_before: "2023-09-18T14:37:09Z",
        leaf_not_after: "2023-09-18T17:37:12Z",
        debug: true,
    },
    Doc {
        file: "nitro/marlin_2024-02-26_aps1.cbor",
        timestamp_ms: 1_708_930_921_439,
        not_before: "2024-02-26T06:59:33Z",
        leaf_not_after: "2024-02-26T09:59:36Z",
        debug: false,
    },
];

/// Raw CBOR of a fixture (base64 ones decoded).
pub fn raw(doc: &Doc) -> Vec<u8> {
    let bytes = read(doc.file);
    attesta_evidence::decode_input(&bytes)
        .expect("fixture decodes")
        .1
        .into_owned()
}
