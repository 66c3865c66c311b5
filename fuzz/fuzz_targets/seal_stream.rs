//! Sealed streams on the client: the frame reader and the stream opener on
//! arbitrary bodies fed in arbitrary pieces. Never panic, and the only body
//! that verifies is the genuine one (the committed test-vector stream,
//! whose request this target rebuilds from the vector file).
//! Input: one byte of piece size (0 = the whole body at once), then the body.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::Policy;
use attesta_seal::channel::{RequestContext, seal_request_bytes};
use attesta_seal::frames::FrameReader;
use attesta_seal::rand_core::{TryCryptoRng, TryRng};
use attesta_seal::NodeKeys;
use libfuzzer_sys::fuzz_target;

const VECTORS: &str = include_str!("../../crates/seal/tests/vectors/stream-v2.json");

/// The vector's HPKE ephemeral IKM as "randomness": fuzzing needs determinism, not secrecy.
struct Cycle(Vec<u8>, usize);
impl TryRng for Cycle {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for d in dst {
            *d = self.0.get(self.1 % self.0.len().max(1)).copied().unwrap_or(0);
            self.1 += 1;
        }
        Ok(())
    }
}
impl TryCryptoRng for Cycle {}

fn fixture() -> &'static (RequestContext, Vec<u8>, Policy) {
    static F: OnceLock<(RequestContext, Vec<u8>, Policy)> = OnceLock::new();
    F.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(VECTORS).expect("vector file");
        let h = |p: &str| -> Vec<u8> {
            let s = v.pointer(p).and_then(|s| s.as_str()).expect("vector field");
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
                .collect()
        };
        let keys = NodeKeys::from_secret_bytes(
            &h("/node/hpke_ikm").try_into().expect("32 bytes"),
            &h("/node/sign_seed").try_into().expect("32 bytes"),
        );
        let request = v["request"]["plaintext"].as_str().expect("plaintext").as_bytes().to_vec();
        let (_, ctx) = seal_request_bytes(
            keys.public(),
            request,
            "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u".into(),
            vec![10, 11, 12, 13],
            &mut Cycle(h("/request/ikm_e"), 0),
        )
        .expect("seal");
        (ctx, h("/stream/body"), Policy::aws_nitro().expect("pinned root"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (ctx, genuine, policy) = fixture();
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let piece = if piece == 0 { body.len().max(1) } else { usize::from(piece) };
    let mut reader = FrameReader::new(1 << 16);
    let mut opener = ctx.stream_opener();
    let mut failed = false;
    for part in body.chunks(piece) {
        reader.push(part);
        while let Ok(Some(_)) = reader.next_frame() {}
        failed |= opener.feed(part).is_err();
    }
    let _ = reader.finish();
    let verified = opener.finish(policy);
    if verified.is_ok() {
        assert!(!failed, "an opener that failed verified later");
        assert_eq!(body, &genuine[..], "a body other than the genuine stream verified");
    }
});
