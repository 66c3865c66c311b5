//! The node's side of the request channel: RFC 9180 base mode, single-shot open, for the
//! one suite the protocol uses — DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305 — with the X25519 and the AEAD from aws-lc.
//!
//! Why not the `hpke` crate, which the sending side uses: opening is the node's CPU per
//! sealed request, and there the crate costs twice what it must. Its decapsulation
//! recomputes the receiver's public key from the private key on every call (a base-point
//! multiplication and an inversion, ~12 µs here), its X25519 is curve25519-dalek's
//! portable ladder (~40 µs against aws-lc's ~17 µs) and its ChaCha20-Poly1305 opens a
//! 23 KB request in ~21 µs against aws-lc's ~9 µs. This receiver keeps the public key,
//! precomputes the key-schedule context (constant for a key set: base mode, no PSK, the
//! node's fixed `info`) and does the rest with aws-lc. It is checked against the `hpke`
//! crate — every request in the test suite is sealed by that crate and opened here, and
//! the unit tests below compare plaintexts and exported secrets on random keys.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use hkdf::{Hkdf, HkdfExtract};
use sha2_11::Sha256;
use zeroize::Zeroizing;

/// RFC 9180 `suite_id` of the KEM: "KEM" ‖ I2OSP(0x0020, 2).
const KEM_SUITE: &[u8] = b"KEM\x00\x20";
/// RFC 9180 `suite_id` of the whole suite: "HPKE" ‖ kem 0x0020 ‖ kdf 0x0001 ‖ aead 0x0003.
const HPKE_SUITE: &[u8] = b"HPKE\x00\x20\x00\x01\x00\x03";
/// Every label is prefixed with this version string.
const VERSION: &[u8] = b"HPKE-v1";
/// `mode_base`.
const MODE_BASE: u8 = 0;

/// Why a request could not be opened. Deliberately one kind: which step failed tells a
/// sender nothing it may learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFailed;

/// A receiver for one static X25519 key and one `info`.
pub(crate) struct Receiver {
    sk: PrivateKey,
    pk: [u8; 32],
    /// `key_schedule_context = mode ‖ psk_id_hash ‖ info_hash`, fixed for this key's `info`.
    context: [u8; 65],
}

impl Receiver {
    /// The receiver of the X25519 private key `sk` (its public key `pk`) for requests
    /// sealed with `info`. `None` when aws-lc refuses the key bytes.
    pub(crate) fn new(sk: &[u8; 32], pk: [u8; 32], info: &[u8]) -> Option<Self> {
        let sk = PrivateKey::from_private_key(&X25519, sk).ok()?;
        let mut context = [0u8; 65];
        context[0] = MODE_BASE;
        context[1..33]
            .copy_from_slice(labeled_extract(&[], HPKE_SUITE, b"psk_id_hash", &[]).as_slice());
        context[33..]
            .copy_from_slice(labeled_extract(&[], HPKE_SUITE, b"info_hash", info).as_slice());
        Some(Receiver { sk, pk, context })
    }

    /// `SetupBaseR(enc, skR, info)` then `Open(aad, ciphertext)` at sequence 0: the
    /// plaintext and the context's exporter.
    pub(crate) fn open(
        &self,
        enc: &[u8; 32],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<(Vec<u8>, Exporter), OpenFailed> {
        // Decap: dh = DH(skR, pkE); a low-order pkE gives the all-zero secret, which RFC
        // 9180 §7.1.4 says to refuse (aws-lc refuses it too; checked here regardless).
        let dh: Zeroizing<[u8; 32]> = agreement::agree(
            &self.sk,
            UnparsedPublicKey::new(&X25519, enc),
            OpenFailed,
            |s| {
                let mut out = Zeroizing::new([0u8; 32]);
                if s.len() != 32 {
                    return Err(OpenFailed);
                }
                out.copy_from_slice(s);
                Ok(out)
            },
        )?;
        if dh.iter().all(|b| *b == 0) {
            return Err(OpenFailed);
        }
        let eae_prk = labeled_extract(&[], KEM_SUITE, b"eae_prk", dh.as_slice());
        let mut shared = Zeroizing::new([0u8; 32]);
        labeled_expand(
            eae_prk.as_slice(),
            KEM_SUITE,
            b"shared_secret",
            &[enc, &self.pk],
            shared.as_mut_slice(),
        )?;
        // Key schedule, base mode: psk = "".
        let secret = labeled_extract(shared.as_slice(), HPKE_SUITE, b"secret", &[]);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut base_nonce = [0u8; 12];
        let mut exporter = Zeroizing::new([0u8; 32]);
        labeled_expand(
            secret.as_slice(),
            HPKE_SUITE,
            b"key",
            &[&self.context],
            key.as_mut_slice(),
        )?;
        labeled_expand(
            secret.as_slice(),
            HPKE_SUITE,
            b"base_nonce",
            &[&self.context],
            &mut base_nonce,
        )?;
        labeled_expand(
            secret.as_slice(),
            HPKE_SUITE,
            b"exp",
            &[&self.context],
            exporter.as_mut_slice(),
        )?;
        // Sequence number 0: the nonce is the base nonce itself; a context opens once.
        let aead = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key.as_slice()).map_err(|_| OpenFailed)?,
        );
        let mut buffer = ciphertext.to_vec();
        let len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(base_nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| OpenFailed)?
            .len();
        buffer.truncate(len);
        Ok((buffer, Exporter { secret: exporter }))
    }
}

/// The opened context's `Export(exporter_context, L)`.
pub(crate) struct Exporter {
    secret: Zeroizing<[u8; 32]>,
}

impl Exporter {
    /// Fills `out` with `Export(label, out.len())`.
    pub(crate) fn export(&self, label: &[u8], out: &mut [u8]) -> Result<(), OpenFailed> {
        labeled_expand(self.secret.as_slice(), HPKE_SUITE, b"sec", &[label], out)
    }
}

/// `LabeledExtract(salt, label, ikm) = HKDF-Extract(salt, "HPKE-v1" ‖ suite ‖ label ‖ ikm)`.
fn labeled_extract(salt: &[u8], suite: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut extract = HkdfExtract::<Sha256>::new(Some(salt));
    for part in [VERSION, suite, label, ikm] {
        extract.input_ikm(part);
    }
    let (prk, _) = extract.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    out
}

/// `LabeledExpand(prk, label, info, L) = HKDF-Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖ suite ‖
/// label ‖ info, L)`, `info` given in pieces.
fn labeled_expand(
    prk: &[u8],
    suite: &[u8],
    label: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), OpenFailed> {
    let len = u16::try_from(out.len())
        .map_err(|_| OpenFailed)?
        .to_be_bytes();
    let hk = Hkdf::<Sha256>::from_prk(prk).map_err(|_| OpenFailed)?;
    // Every caller passes at most two info parts: the pieces fit on the stack.
    let mut parts: [&[u8]; 6] = [&len, VERSION, suite, label, &[], &[]];
    let used = 4 + info.len();
    parts
        .get_mut(4..used)
        .ok_or(OpenFailed)?
        .copy_from_slice(info);
    let parts = parts.get(..used).ok_or(OpenFailed)?;
    hk.expand_multi_info(parts, out).map_err(|_| OpenFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256 as Kem;
    use hpke::{Kem as _, OpModeS, Serializable};

    /// A deterministic stream of bytes, enough for keys and messages.
    struct Counter(u64);
    impl Counter {
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut out = [0u8; N];
            for b in &mut out {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (self.0 >> 33) as u8;
            }
            out
        }
    }

    fn receiver(ikm: &[u8; 32], info: &[u8]) -> (Receiver, <Kem as hpke::Kem>::PublicKey) {
        let (sk, pk) = Kem::derive_keypair(ikm);
        let sk_bytes: [u8; 32] = sk.to_bytes().into();
        let pk_bytes: [u8; 32] = pk.to_bytes().into();
        (Receiver::new(&sk_bytes, pk_bytes, info).unwrap(), pk)
    }

    #[test]
    fn opens_what_the_hpke_crate_seals_and_exports_the_same_secrets() {
        let mut rng = Counter(1);
        let mut os = sender_rng();
        for round in 0..24usize {
            let info = [b"attesta/v2 request".as_slice(), &rng.bytes::<32>()].concat();
            let (receiver, pk) = receiver(&rng.bytes::<32>(), &info);
            let aad = rng.bytes::<40>();
            let message: Vec<u8> = (0..round * 977).map(|i| (i * 31 + round) as u8).collect();
            let (enc, mut ctx) = hpke::setup_sender_with_rng::<HpkeChaCha, HkdfSha256, Kem>(
                &OpModeS::Base,
                &pk,
                &info,
                &mut os,
            )
            .unwrap();
            let ct = ctx.seal(&message, &aad).unwrap();
            let enc: [u8; 32] = enc.to_bytes().into();
            let (plain, exporter) = receiver.open(&enc, &aad, &ct).unwrap();
            assert_eq!(plain, message, "round {round}");
            for (label, len) in [
                (b"attesta/v2 response".as_slice(), 32),
                (b"".as_slice(), 7),
                (b"x", 64),
            ] {
                let mut ours = vec![0u8; len];
                let mut theirs = vec![0u8; len];
                exporter.export(label, &mut ours).unwrap();
                ctx.export(label, &mut theirs).unwrap();
                assert_eq!(ours, theirs, "round {round}, label {label:?}");
            }
            // Any changed bit of enc, AAD or ciphertext, or another info, is refused.
            let mut bad = ct.clone();
            let at = round % bad.len();
            bad[at] ^= 1;
            assert_eq!(receiver.open(&enc, &aad, &bad).err(), Some(OpenFailed));
            let mut bad_aad = aad;
            bad_aad[round % 40] ^= 0x80;
            assert_eq!(receiver.open(&enc, &bad_aad, &ct).err(), Some(OpenFailed));
            let mut bad_enc = enc;
            bad_enc[round % 32] ^= 4;
            assert!(receiver.open(&bad_enc, &aad, &ct).is_err());
        }
    }

    #[test]
    fn another_info_or_a_low_order_point_is_refused() {
        let ikm = [5u8; 32];
        let (one, pk) = receiver(&ikm, b"info one");
        let (other, _) = receiver(&ikm, b"info two");
        let mut os = sender_rng();
        let (enc, mut ctx) = hpke::setup_sender_with_rng::<HpkeChaCha, HkdfSha256, Kem>(
            &OpModeS::Base,
            &pk,
            b"info one",
            &mut os,
        )
        .unwrap();
        let ct = ctx.seal(b"hello", b"").unwrap();
        let enc: [u8; 32] = enc.to_bytes().into();
        assert_eq!(one.open(&enc, b"", &ct).unwrap().0, b"hello");
        assert_eq!(other.open(&enc, b"", &ct).err(), Some(OpenFailed));
        // The all-zero point and the point of order 8 give the all-zero DH output.
        let mut order8 = [0u8; 32];
        order8[0] = 1;
        for low in [[0u8; 32], order8] {
            assert_eq!(one.open(&low, b"", &ct).err(), Some(OpenFailed));
        }
    }

    fn sender_rng() -> impl hpke::rand_core::CryptoRng {
        SenderRng(99)
    }

    /// The sender's ephemeral keys: a deterministic RNG in the `rand_core` interface the
    /// `hpke` crate takes.
    struct SenderRng(u64);
    impl hpke::rand_core::TryRng for SenderRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Ok(self.0 >> 11)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                *b = self.try_next_u64()? as u8;
            }
            Ok(())
        }
    }
    impl hpke::rand_core::TryCryptoRng for SenderRng {}
}
