//! Minimal protobuf codec for the two messages UnixFS files need: dag-pb `PBNode` and UnixFS `Data`.
//!
//! Hand-written so that decoding untrusted blocks never allocates more than the block's own size
//! and never panics.

use crate::varint;

/// UnixFS `Data.Type` values we treat as file content.
pub(crate) const UNIXFS_RAW: u64 = 0;
pub(crate) const UNIXFS_FILE: u64 = 2;

/// Why a dag-pb or UnixFS message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PbError {
    /// The message ends inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A varint longer than 64 bits.
    #[error("protobuf varint overflow")]
    Overflow,
    /// A field number or wire type that this message does not allow.
    #[error("unexpected protobuf field {field} (wire type {wire})")]
    UnexpectedField {
        /// Field number.
        field: u64,
        /// Wire type.
        wire: u64,
    },
    /// A required field is absent.
    #[error("missing required field {0}")]
    Missing(&'static str),
    /// dag-pb requires all links before the data field.
    #[error("dag-pb links after data")]
    LinksAfterData,
}

impl From<varint::VarintError> for PbError {
    fn from(e: varint::VarintError) -> Self {
        match e {
            varint::VarintError::Truncated => PbError::Truncated,
            varint::VarintError::Overflow => PbError::Overflow,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self) -> Result<u64, PbError> {
        let (v, n) = varint::decode(self.buf)?;
        self.buf = self.buf.get(n..).ok_or(PbError::Truncated)?;
        Ok(v)
    }

    fn key(&mut self) -> Result<(u64, u64), PbError> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], PbError> {
        let len = usize::try_from(self.varint()?).map_err(|_| PbError::Truncated)?;
        if len > self.buf.len() {
            return Err(PbError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn skip(&mut self, field: u64, wire: u64) -> Result<(), PbError> {
        let n = match wire {
            0 => {
                self.varint()?;
                return Ok(());
            }
            1 => 8,
            2 => {
                self.bytes()?;
                return Ok(());
            }
            5 => 4,
            _ => return Err(PbError::UnexpectedField { field, wire }),
        };
        self.buf = self.buf.get(n..).ok_or(PbError::Truncated)?;
        Ok(())
    }
}

/// A decoded dag-pb link (borrowing the block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PbLink<'a> {
    pub(crate) hash: &'a [u8],
    pub(crate) tsize: Option<u64>,
}

/// A decoded dag-pb node (borrowing the block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PbNode<'a> {
    pub(crate) links: Vec<PbLink<'a>>,
    pub(crate) data: Option<&'a [u8]>,
}

/// Decodes a dag-pb block strictly (only fields 1 and 2, links first).
pub(crate) fn decode_node(block: &[u8]) -> Result<PbNode<'_>, PbError> {
    let mut r = Reader { buf: block };
    let mut node = PbNode {
        links: Vec::new(),
        data: None,
    };
    while !r.done() {
        match r.key()? {
            (2, 2) => {
                if node.data.is_some() {
                    return Err(PbError::LinksAfterData);
                }
                node.links.push(decode_link(r.bytes()?)?);
            }
            (1, 2) if node.data.is_none() => node.data = Some(r.bytes()?),
            (field, wire) => return Err(PbError::UnexpectedField { field, wire }),
        }
    }
    Ok(node)
}

fn decode_link(buf: &[u8]) -> Result<PbLink<'_>, PbError> {
    let mut r = Reader { buf };
    let mut hash = None;
    let mut tsize = None;
    let mut seen_name = false;
    while !r.done() {
        match r.key()? {
            (1, 2) if hash.is_none() => hash = Some(r.bytes()?),
            (2, 2) if !seen_name => {
                // The name is irrelevant for file chunks; it only has to be well formed.
                r.bytes()?;
                seen_name = true;
            }
            (3, 0) if tsize.is_none() => tsize = Some(r.varint()?),
            (field, wire) => return Err(PbError::UnexpectedField { field, wire }),
        }
    }
    Ok(PbLink {
        hash: hash.ok_or(PbError::Missing("PBLink.Hash"))?,
        tsize,
    })
}

/// A decoded UnixFS `Data` message (borrowing the block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnixfsData<'a> {
    pub(crate) kind: u64,
    pub(crate) data: Option<&'a [u8]>,
    pub(crate) filesize: Option<u64>,
    pub(crate) blocksizes: Vec<u64>,
}

/// Decodes a UnixFS `Data` message; unknown fields (mode, mtime, …) are skipped.
pub(crate) fn decode_unixfs(buf: &[u8]) -> Result<UnixfsData<'_>, PbError> {
    let mut r = Reader { buf };
    let mut kind = None;
    let mut out = UnixfsData {
        kind: 0,
        data: None,
        filesize: None,
        blocksizes: Vec::new(),
    };
    while !r.done() {
        match r.key()? {
            (1, 0) => kind = Some(r.varint()?),
            (2, 2) => out.data = Some(r.bytes()?),
            (3, 0) => out.filesize = Some(r.varint()?),
            (4, 0) => out.blocksizes.push(r.varint()?),
            (4, 2) => {
                // Packed encoding of the repeated field is valid protobuf too.
                let mut packed = Reader { buf: r.bytes()? };
                while !packed.done() {
                    out.blocksizes.push(packed.varint()?);
                }
            }
            (field, wire) => r.skip(field, wire)?,
        }
    }
    out.kind = kind.ok_or(PbError::Missing("Data.Type"))?;
    Ok(out)
}

fn put_key(field: u64, wire: u64, out: &mut Vec<u8>) {
    varint::encode((field << 3) | wire, out);
}

fn put_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(field, 2, out);
    varint::encode(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Encodes UnixFS `Data{Type=File, Data?, filesize, blocksizes}` as kubo does.
pub(crate) fn encode_unixfs_file(
    data: Option<&[u8]>,
    filesize: u64,
    blocksizes: &[u64],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 16 + blocksizes.len() * 4);
    put_key(1, 0, &mut out);
    varint::encode(UNIXFS_FILE, &mut out);
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        put_bytes(2, d, &mut out);
    }
    put_key(3, 0, &mut out);
    varint::encode(filesize, &mut out);
    for &b in blocksizes {
        put_key(4, 0, &mut out);
        varint::encode(b, &mut out);
    }
    out
}

/// Encodes a dag-pb node: links (hash, empty name, tsize) then data.
pub(crate) fn encode_node(links: &[(Vec<u8>, u64)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + links.len() * 48 + 8);
    let mut link = Vec::with_capacity(48);
    for (hash, tsize) in links {
        link.clear();
        put_bytes(1, hash, &mut link);
        put_bytes(2, b"", &mut link);
        put_key(3, 0, &mut link);
        varint::encode(*tsize, &mut link);
        put_bytes(2, &link, &mut out);
    }
    put_bytes(1, data, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubo_hello_world_leaf_layout() {
        let data = encode_unixfs_file(Some(b"hello world"), 11, &[]);
        let block = encode_node(&[], &data);
        let mut expected = vec![0x0a, 0x11, 0x08, 0x02, 0x12, 0x0b];
        expected.extend_from_slice(b"hello world");
        expected.extend([0x18, 0x0b]);
        assert_eq!(block, expected);
        let node = decode_node(&block).unwrap();
        assert!(node.links.is_empty());
        let fs = decode_unixfs(node.data.unwrap()).unwrap();
        assert_eq!(fs.kind, UNIXFS_FILE);
        assert_eq!(fs.data, Some(&b"hello world"[..]));
        assert_eq!(fs.filesize, Some(11));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode_node(&[0x0a, 0x05, 1]), Err(PbError::Truncated));
        assert_eq!(
            decode_node(&[0x18, 0x01]),
            Err(PbError::UnexpectedField { field: 3, wire: 0 })
        );
        // Data then a link.
        assert_eq!(
            decode_node(&[0x0a, 0x00, 0x12, 0x00]),
            Err(PbError::LinksAfterData)
        );
        // Link without hash.
        assert_eq!(
            decode_node(&[0x12, 0x02, 0x18, 0x01]),
            Err(PbError::Missing("PBLink.Hash"))
        );
        assert_eq!(
            decode_unixfs(&[0x18, 0x01]),
            Err(PbError::Missing("Data.Type"))
        );
        assert_eq!(
            decode_unixfs(&[0x0b]),
            Err(PbError::UnexpectedField { field: 1, wire: 3 })
        );
        assert_eq!(decode_unixfs(&[0x08, 0xff]), Err(PbError::Truncated));
    }

    #[test]
    fn packed_blocksizes() {
        let fs = decode_unixfs(&[0x08, 0x02, 0x22, 0x02, 0x05, 0x07]).unwrap();
        assert_eq!(fs.blocksizes, vec![5, 7]);
    }
}
