//! CAR v1 streaming decoder and a small writer.
//!
//! The decoder trusts nothing: the header is only checked for `version: 1` (its roots are
//! ignored), every length is capped before anything is allocated, and block data is handed out
//! unverified — hashing is the verifier's job.

use std::io::{Read, Write};

use attesta_cbor::{self as cbor, CborError, Value};
use bytes::{Buf, Bytes, BytesMut};

use crate::cid::{Cid, CidError};
use crate::varint::{self, VarintError};

/// Default cap for the header (a handful of roots needs well under 1 KiB).
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;
/// Longest multihash digest we accept while framing; longer is a hash-length bomb.
pub const MAX_DIGEST_LEN: u64 = 128;

/// CAR framing failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// The stream ended inside the header or a frame (or before any header).
    #[error("CAR stream truncated")]
    Truncated,
    /// A varint longer than 64 bits.
    #[error("CAR varint overflow")]
    VarintOverflow,
    /// The header length prefix exceeds the cap.
    #[error("CAR header of {len} bytes exceeds {max}")]
    HeaderTooLarge {
        /// Declared length.
        len: u64,
        /// Cap.
        max: usize,
    },
    /// The header is well-formed CBOR but not a map with `version: 1`.
    #[error("bad CAR header: {0}")]
    BadHeader(&'static str),
    /// The header is not well-formed CBOR.
    #[error("CAR header is not CBOR")]
    HeaderCbor(#[from] CborError),
    /// A frame length prefix exceeds the block cap (checked before allocating).
    #[error("CAR frame of {len} bytes exceeds {max}")]
    FrameTooLarge {
        /// Declared length.
        len: u64,
        /// Cap.
        max: usize,
    },
    /// A CID declares an absurd digest length (hash-length bomb).
    #[error("CID digest length {0} is absurd")]
    DigestTooLong(u64),
    /// A frame's CID is malformed (not merely of an unsupported kind).
    #[error("malformed CID in CAR frame")]
    BadCid,
}

impl From<VarintError> for CarError {
    fn from(e: VarintError) -> Self {
        match e {
            VarintError::Truncated => CarError::Truncated,
            VarintError::Overflow => CarError::VarintOverflow,
        }
    }
}

/// One CAR section. `cid` is `None` when the CID is well formed but not a kind we support
/// (another hash or codec): such blocks can never be ones we need, so callers skip them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarBlock {
    /// The CID the CAR claims for `data` (unverified).
    pub cid: Option<Cid>,
    /// The block bytes (unverified).
    pub data: Bytes,
}

/// Push decoder: feed network chunks with [`CarDecoder::push`], drain with [`CarDecoder::next_block`].
#[derive(Debug)]
pub struct CarDecoder {
    buf: BytesMut,
    header_done: bool,
    max_frame: usize,
    max_header: usize,
}

impl CarDecoder {
    /// A decoder that refuses frames (CID + block) longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        CarDecoder {
            buf: BytesMut::new(),
            header_done: false,
            max_frame,
            max_header: DEFAULT_MAX_HEADER,
        }
    }

    /// Appends bytes from the stream. Drain with `next_block` after each push to keep memory bounded.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete block, `Ok(None)` if more input is needed.
    pub fn next_block(&mut self) -> Result<Option<CarBlock>, CarError> {
        if !self.header_done {
            let Some(header) = self.frame(self.max_header, true)? else {
                return Ok(None);
            };
            check_header(&header)?;
            self.header_done = true;
        }
        let Some(frame) = self.frame(self.max_frame, false)? else {
            return Ok(None);
        };
        let (cid, cid_len) = split_cid(&frame)?;
        let mut data = frame;
        data.advance(cid_len);
        Ok(Some(CarBlock { cid, data }))
    }

    /// Takes one length-prefixed frame if it is fully buffered.
    fn frame(&mut self, max: usize, header: bool) -> Result<Option<Bytes>, CarError> {
        let (len, prefix) = match varint::decode(&self.buf) {
            Ok(v) => v,
            Err(VarintError::Truncated) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if len > max as u64 {
            return Err(if header {
                CarError::HeaderTooLarge { len, max }
            } else {
                CarError::FrameTooLarge { len, max }
            });
        }
        if len == 0 {
            return Err(if header {
                CarError::BadHeader("empty")
            } else {
                CarError::BadCid
            });
        }
        let total = prefix + len as usize;
        if self.buf.len() < total {
            // Reserve only what the (capped) frame needs, so a lying prefix costs at most `max`.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(prefix);
        Ok(Some(self.buf.split_to(len as usize).freeze()))
    }

    /// Call at end of stream: leftover bytes mean the stream was cut inside a frame.
    pub fn finish(&self) -> Result<(), CarError> {
        if !self.header_done || !self.buf.is_empty() {
            Err(CarError::Truncated)
        } else {
            Ok(())
        }
    }
}

/// Parses the CID at the front of a frame without trusting its lengths.
fn split_cid(frame: &[u8]) -> Result<(Option<Cid>, usize), CarError> {
    let mut pos = 0usize;
    let mut next = || -> Result<u64, CarError> {
        let rest = frame.get(pos..).ok_or(CarError::BadCid)?;
        let (v, n) = varint::decode(rest).map_err(|_| CarError::BadCid)?;
        pos += n;
        Ok(v)
    };
    let is_v0 = frame.first() == Some(&0x12) && frame.get(1) == Some(&0x20);
    if !is_v0 {
        let version = next()?;
        if version != 1 {
            return Err(CarError::BadCid);
        }
        next()?; // codec
    }
    next()?; // multihash code
    let digest_len = next()?;
    if digest_len > MAX_DIGEST_LEN {
        return Err(CarError::DigestTooLong(digest_len));
    }
    let cid_len = pos + digest_len as usize;
    let cid_bytes = frame.get(..cid_len).ok_or(CarError::BadCid)?;
    match Cid::from_bytes(cid_bytes) {
        Ok(cid) => Ok((Some(cid), cid_len)),
        Err(
            CidError::UnsupportedCodec(_)
            | CidError::UnsupportedHash(_)
            | CidError::BadDigestLength(_),
        ) => Ok((None, cid_len)),
        Err(_) => Err(CarError::BadCid),
    }
}

/// Checks that the header is a CBOR map whose `version` is 1; everything else is ignored.
///
/// Decoded by the tree's one CBOR decoder (`attesta-cbor`), which bounds nesting and never
/// allocates beyond what the (already size-capped) header bytes can hold.
fn check_header(h: &[u8]) -> Result<(), CarError> {
    let Value::Map(entries) = cbor::decode(h)? else {
        return Err(CarError::BadHeader("not a map"));
    };
    let mut version = None;
    for (key, value) in &entries {
        let Value::Text(key) = key else {
            return Err(CarError::BadHeader("non-text key"));
        };
        if key == "version" {
            let Value::Uint(v) = value else {
                return Err(CarError::BadHeader("version is not an integer"));
            };
            version = Some(*v);
        }
    }
    match version {
        Some(1) => Ok(()),
        Some(_) => Err(CarError::BadHeader("version is not 1")),
        None => Err(CarError::BadHeader("no version")),
    }
}

/// Blocking iterator over the blocks of a CAR read from `R`.
#[derive(Debug)]
pub struct CarReader<R: Read> {
    inner: R,
    decoder: CarDecoder,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read> CarReader<R> {
    /// Reads a CAR, refusing frames longer than `max_frame`.
    pub fn new(inner: R, max_frame: usize) -> Self {
        CarReader {
            inner,
            decoder: CarDecoder::new(max_frame),
            buf: vec![0; 256 * 1024],
            eof: false,
        }
    }

    /// The next block, `Ok(None)` at a clean end of stream.
    pub fn next_block(&mut self) -> Result<Option<CarBlock>, CarReadError> {
        loop {
            if let Some(b) = self.decoder.next_block()? {
                return Ok(Some(b));
            }
            if self.eof {
                self.decoder.finish()?;
                return Ok(None);
            }
            let n = match self.inner.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CarReadError::Io(e)),
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.decoder.push(self.buf.get(..n).unwrap_or_default());
            }
        }
    }
}

/// Errors of the blocking [`CarReader`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarReadError {
    /// Framing error.
    #[error(transparent)]
    Car(#[from] CarError),
    /// The underlying reader failed.
    #[error("reading CAR: {0}")]
    Io(#[source] std::io::Error),
}

/// Writes a CARv1 header naming `root`.
pub fn write_header(out: &mut impl Write, root: &Cid) -> std::io::Result<()> {
    let mut cid = vec![0u8];
    cid.extend(root.to_bytes());
    let mut h = vec![0xa2, 0x65];
    h.extend_from_slice(b"roots");
    h.extend([0x81, 0xd8, 0x2a, 0x58, cid.len() as u8]);
    h.extend(cid);
    h.push(0x67);
    h.extend_from_slice(b"version");
    h.push(0x01);
    let mut prefix = Vec::new();
    varint::encode(h.len() as u64, &mut prefix);
    out.write_all(&prefix)?;
    out.write_all(&h)
}

/// Writes one CAR section.
pub fn write_block(out: &mut impl Write, cid: &Cid, data: &[u8]) -> std::io::Result<()> {
    let cid = cid.to_bytes();
    let mut prefix = Vec::new();
    varint::encode((cid.len() + data.len()) as u64, &mut prefix);
    out.write_all(&prefix)?;
    out.write_all(&cid)?;
    out.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(h: &[u8]) -> Vec<u8> {
        let mut v = vec![h.len() as u8];
        v.extend_from_slice(h);
        v
    }

    #[test]
    fn header_checks() {
        let root = crate::importer::cid_of_bytes(b"x", crate::importer::Profile::KuboDefaultV0);
        let mut good = Vec::new();
        write_header(&mut good, &root).unwrap();
        let mut d = CarDecoder::new(1024);
        d.push(&good);
        assert_eq!(d.next_block(), Ok(None));
        assert!(d.finish().is_ok());
        // {"version": 2}
        let mut v2 = vec![0xa1, 0x67];
        v2.extend_from_slice(b"version");
        v2.push(0x02);
        let mut d = CarDecoder::new(1024);
        d.push(&header_bytes(&v2));
        assert_eq!(d.next_block(), Err(CarError::BadHeader("version is not 1")));
        let mut d = CarDecoder::new(1024);
        d.push(&header_bytes(&[0x80]));
        assert_eq!(d.next_block(), Err(CarError::BadHeader("not a map")));
        // A map that claims 2^32 entries.
        let mut d = CarDecoder::new(1024);
        d.push(&header_bytes(&[
            0xa1, 0x61, b'a', 0xba, 0xff, 0xff, 0xff, 0xff,
        ]));
        assert!(matches!(
            d.next_block(),
            Err(CarError::HeaderCbor(CborError::Truncated(_)))
        ));
        let mut d = CarDecoder::new(1024);
        d.push(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            d.next_block(),
            Err(CarError::HeaderTooLarge { .. })
        ));
        assert!(CarDecoder::new(1).finish().is_err());
    }
}
