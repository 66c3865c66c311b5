//! Incremental verification of a UnixFS file DAG received from an untrusted source.
//!
//! Blocks are hashed before they are parsed, file bytes are written out in order as the DAG is
//! walked depth-first, and every size the DAG declares is checked against what its children
//! actually produce. The verifier never asks where blocks come from: a CAR stream and a
//! block-by-block fetch drive it the same way ([`DagVerifier::next_needed`] / [`DagVerifier::push`]).

use std::collections::HashMap;

use bytes::Bytes;

use crate::car::CarError;
use crate::cid::{Cid, CidError, Codec};
use crate::pb::{self, PbError, UNIXFS_FILE, UNIXFS_RAW};

/// Caps applied while verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted block (IPFS itself uses at most 2 MiB).
    pub max_block_bytes: usize,
    /// Deepest accepted tree (root = depth 0).
    pub max_depth: usize,
    /// Largest accepted file.
    pub max_file_bytes: u64,
    /// Memory for blocks that arrive before they are needed.
    pub max_buffered_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_block_bytes: 2 * 1024 * 1024,
            max_depth: 32,
            max_file_bytes: 64 * 1024 * 1024 * 1024,
            max_buffered_bytes: 8 * 1024 * 1024,
        }
    }
}

/// One variant per verification check. Each is evidence against the source of the blocks.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A block does not hash to the CID it was delivered as.
    #[error("block {cid} does not match its hash")]
    BadBlockHash {
        /// The claimed CID.
        cid: Cid,
    },
    /// A link names a codec other than dag-pb or raw.
    #[error("unsupported codec 0x{0:x}")]
    UnsupportedCodec(u64),
    /// A link uses a hash other than sha2-256.
    #[error("unsupported hash 0x{0:x}")]
    UnsupportedHash(u64),
    /// A link's CID is malformed.
    #[error("malformed link CID: {0}")]
    BadLink(CidError),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb/UnixFS: {reason}")]
    MalformedNode {
        /// The block.
        cid: Cid,
        /// Decoder message.
        reason: PbError,
    },
    /// A dag-pb node that is not a UnixFS File or Raw node.
    #[error("block {cid} is not a UnixFS file (type {kind:?})")]
    NotUnixfsFile {
        /// The block.
        cid: Cid,
        /// The UnixFS type, `None` if the node has no UnixFS data.
        kind: Option<u64>,
    },
    /// `blocksizes` does not have one entry per link.
    #[error("block {cid}: {links} links but {blocksizes} blocksizes")]
    BlocksizesMismatch {
        /// The node.
        cid: Cid,
        /// Number of links.
        links: usize,
        /// Number of blocksizes.
        blocksizes: usize,
    },
    /// `filesize` disagrees with the node's data plus its `blocksizes`.
    #[error("block {cid}: filesize {declared:?} but content adds up to {actual}")]
    FilesizeMismatch {
        /// The node.
        cid: Cid,
        /// Declared `filesize` (`None` if absent).
        declared: Option<u64>,
        /// What the data and blocksizes add up to.
        actual: u64,
    },
    /// A child produced a different number of bytes than its parent declared for it.
    #[error("block {cid} holds {actual} bytes but its parent declared {declared}")]
    ChildSizeMismatch {
        /// The child.
        cid: Cid,
        /// Size from the parent's `blocksizes`.
        declared: u64,
        /// Bytes the child produced.
        actual: u64,
    },
    /// The tree is deeper than allowed.
    #[error("DAG deeper than {max}")]
    DepthExceeded {
        /// The cap.
        max: usize,
    },
    /// A block is larger than allowed.
    #[error("block of {size} bytes exceeds {max}")]
    BlockTooLarge {
        /// Block size (or declared frame size).
        size: u64,
        /// The cap.
        max: usize,
    },
    /// The file is larger than allowed.
    #[error("file of {size} bytes exceeds {max}")]
    FileTooLarge {
        /// Declared size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Too many blocks arrived before they were needed (the stream is not in DFS order).
    #[error("too many out-of-order blocks buffered (cap {max} bytes)")]
    OutOfOrder {
        /// The cap.
        max: usize,
    },
    /// The stream ended before the DAG was complete.
    #[error("stream ended before block {next} arrived")]
    Truncated {
        /// The first block still missing.
        next: Cid,
    },
    /// The source said it does not have a block we need.
    #[error("source does not have block {cid}")]
    MissingBlock {
        /// The block.
        cid: Cid,
    },
    /// The source sent far more data than the file can need.
    #[error("more than {limit} bytes received for this file")]
    ExcessData {
        /// The cap that was exceeded.
        limit: u64,
    },
    /// The CAR framing is invalid (including hash-length and frame-length bombs).
    #[error("CAR: {0}")]
    Car(CarError),
    /// Writing the verified bytes locally failed (not the source's fault). Shared so the
    /// error can reach every waiter of one download.
    #[error("writing output: {0}")]
    Output(std::sync::Arc<std::io::Error>),
}

impl From<CarError> for VerifyError {
    fn from(e: CarError) -> Self {
        match e {
            // An oversized frame is an oversized block, whatever layer notices it.
            CarError::FrameTooLarge { len, max } => VerifyError::BlockTooLarge { size: len, max },
            other => VerifyError::Car(other),
        }
    }
}

impl VerifyError {
    /// Always `false` for evidence against a source: a failed check is never retried against the
    /// same source as if it were a network blip. Callers move on to the next source instead.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// True for failures that say nothing about the source (local disk problems).
    pub fn is_local(&self) -> bool {
        matches!(self, VerifyError::Output(_))
    }

    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::BadBlockHash { .. } => "bad_block_hash",
            VerifyError::UnsupportedCodec(_) => "unsupported_codec",
            VerifyError::UnsupportedHash(_) => "unsupported_hash",
            VerifyError::BadLink(_) => "bad_link",
            VerifyError::MalformedNode { .. } => "malformed_node",
            VerifyError::NotUnixfsFile { .. } => "not_unixfs_file",
            VerifyError::BlocksizesMismatch { .. } => "blocksizes_mismatch",
            VerifyError::FilesizeMismatch { .. } => "filesize_mismatch",
            VerifyError::ChildSizeMismatch { .. } => "child_size_mismatch",
            VerifyError::DepthExceeded { .. } => "depth_exceeded",
            VerifyError::BlockTooLarge { .. } => "block_too_large",
            VerifyError::FileTooLarge { .. } => "file_too_large",
            VerifyError::OutOfOrder { .. } => "out_of_order",
            VerifyError::Truncated { .. } => "truncated",
            VerifyError::MissingBlock { .. } => "missing_block",
            VerifyError::ExcessData { .. } => "excess_data",
            VerifyError::Car(_) => "car",
            VerifyError::Output(_) => "output",
        }
    }
}

/// Where verified file bytes go. Reading back is needed for blocks that occur more than once
/// in a file: a CAR carries them once, so their bytes are copied from where they were written.
pub trait VerifyOutput {
    /// Appends bytes.
    fn append(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Reads already written bytes.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl VerifyOutput for Vec<u8> {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = self
            .get(start..start.saturating_add(buf.len()))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl VerifyOutput for crate::store::PendingBlob {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(self, data)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        crate::store::PendingBlob::read_at(self, offset, buf)
    }
}

/// Discards bytes but counts them (verification-only runs, e.g. benchmarks).
#[derive(Debug, Default)]
pub struct CountingSink {
    /// Bytes appended.
    pub bytes: u64,
}

impl VerifyOutput for CountingSink {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn read_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("CountingSink keeps no data"))
    }
}

#[derive(Debug)]
struct Child {
    cid: Cid,
    size: u64,
}

#[derive(Debug)]
struct Frame {
    cid: Cid,
    children: Vec<Child>,
    next: usize,
    /// Output offset where this node's bytes start.
    start: u64,
    filesize: u64,
    depth: usize,
}

/// What a [`DagVerifier::push`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The block was needed and consumed.
    Used,
    /// Needed later; held in memory until then.
    Buffered,
    /// Not part of this DAG (or already seen); ignored.
    Ignored,
}

/// A verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The root CID.
    pub root: Cid,
    /// File size.
    pub size: u64,
}

/// Walks a UnixFS file DAG depth-first, verifying blocks as they are pushed.
#[derive(Debug)]
pub struct DagVerifier {
    root: Cid,
    limits: Limits,
    started: bool,
    stack: Vec<Frame>,
    written: u64,
    declared: Option<u64>,
    /// Output range of every finished subtree, to replay repeated blocks.
    completed: HashMap<Cid, (u64, u64)>,
    early: HashMap<Cid, Bytes>,
    early_bytes: usize,
    blocks: u64,
}

impl DagVerifier {
    /// Starts verifying the DAG under `root`.
    pub fn new(root: Cid, limits: Limits) -> Self {
        DagVerifier {
            root,
            limits,
            started: false,
            stack: Vec::new(),
            written: 0,
            declared: None,
            completed: HashMap::new(),
            early: HashMap::new(),
            early_bytes: 0,
            blocks: 0,
        }
    }

    /// The next block the walk needs, `None` when the file is complete.
    pub fn next_needed(&self) -> Option<&Cid> {
        if !self.started {
            return Some(&self.root);
        }
        self.stack
            .last()
            .and_then(|f| f.children.get(f.next))
            .map(|c| &c.cid)
    }

    /// Up to `max` blocks the walk will need, in the order they are known (the next one first):
    /// the remaining children of every node being expanded. For prefetching; excludes blocks
    /// already held or seen.
    pub fn upcoming(&self, max: usize) -> Vec<Cid> {
        let mut out: Vec<Cid> = Vec::new();
        if !self.started {
            out.push(self.root.clone());
            return out;
        }
        for (i, frame) in self.stack.iter().rev().enumerate() {
            // Below the top, the child at `next` is the node being expanded above it.
            let from = if i == 0 { frame.next } else { frame.next + 1 };
            for child in frame.children.iter().skip(from) {
                if out.len() >= max {
                    return out;
                }
                if !self.completed.contains_key(&child.cid)
                    && !self.early.contains_key(&child.cid)
                    && !out.contains(&child.cid)
                {
                    out.push(child.cid.clone());
                }
            }
        }
        out
    }

    /// True when the whole DAG has been verified and written.
    pub fn is_done(&self) -> bool {
        self.started && self.stack.is_empty()
    }

    /// File bytes verified and written so far.
    pub fn bytes_verified(&self) -> u64 {
        self.written
    }

    /// The file size the root declares, once the root has been seen.
    pub fn declared_size(&self) -> Option<u64> {
        self.declared
    }

    /// Blocks consumed so far.
    pub fn blocks_verified(&self) -> u64 {
        self.blocks
    }

    /// Offers a block claimed to be `cid`. The hash is checked first, whatever the block is.
    pub fn push(
        &mut self,
        cid: &Cid,
        data: Bytes,
        out: &mut impl VerifyOutput,
    ) -> Result<Pushed, VerifyError> {
        if data.len() > self.limits.max_block_bytes {
            return Err(VerifyError::BlockTooLarge {
                size: data.len() as u64,
                max: self.limits.max_block_bytes,
            });
        }
        if !cid.matches(&data) {
            return Err(VerifyError::BadBlockHash { cid: cid.clone() });
        }
        if self.next_needed() == Some(cid) {
            self.consume(cid.clone(), &data, out)?;
            self.drain(out)?;
            return Ok(Pushed::Used);
        }
        let wanted_later = self
            .stack
            .iter()
            .any(|f| f.children.iter().skip(f.next).any(|c| &c.cid == cid));
        if !wanted_later || self.completed.contains_key(cid) || self.early.contains_key(cid) {
            return Ok(Pushed::Ignored);
        }
        if self.early_bytes + data.len() > self.limits.max_buffered_bytes {
            return Err(VerifyError::OutOfOrder {
                max: self.limits.max_buffered_bytes,
            });
        }
        self.early_bytes += data.len();
        self.early.insert(cid.clone(), data);
        Ok(Pushed::Buffered)
    }

    /// Replays repeated subtrees and buffered blocks that are now next in line.
    fn drain(&mut self, out: &mut impl VerifyOutput) -> Result<(), VerifyError> {
        while let Some(next) = self.next_needed().cloned() {
            if let Some(&(offset, len)) = self.completed.get(&next) {
                copy_within(out, offset, len)?;
                self.written += len;
                self.finish_child(&next, len)?;
            } else if let Some(data) = self.early.remove(&next) {
                self.early_bytes -= data.len();
                self.consume(next, &data, out)?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Call at end of input: succeeds only if the whole DAG was verified.
    pub fn finish(&self) -> Result<Verified, VerifyError> {
        match self.next_needed() {
            Some(next) => Err(VerifyError::Truncated { next: next.clone() }),
            None => Ok(Verified {
                root: self.root.clone(),
                size: self.written,
            }),
        }
    }

    fn depth(&self) -> usize {
        self.stack.last().map_or(0, |f| f.depth + 1)
    }

    fn consume(
        &mut self,
        cid: Cid,
        data: &[u8],
        out: &mut impl VerifyOutput,
    ) -> Result<(), VerifyError> {
        let is_root = !self.started;
        self.started = true;
        self.blocks += 1;
        let depth = self.depth();
        if depth > self.limits.max_depth {
            return Err(VerifyError::DepthExceeded {
                max: self.limits.max_depth,
            });
        }
        let (file_data, links, filesize) = match cid.codec() {
            Codec::Raw => (data, Vec::new(), data.len() as u64),
            Codec::DagPb => {
                let malformed = |reason| VerifyError::MalformedNode {
                    cid: cid.clone(),
                    reason,
                };
                let node = pb::decode_node(data).map_err(malformed)?;
                let Some(fs_bytes) = node.data else {
                    return Err(VerifyError::NotUnixfsFile { cid, kind: None });
                };
                let fs = pb::decode_unixfs(fs_bytes).map_err(malformed)?;
                if fs.kind != UNIXFS_FILE && fs.kind != UNIXFS_RAW {
                    return Err(VerifyError::NotUnixfsFile {
                        cid,
                        kind: Some(fs.kind),
                    });
                }
                if fs.blocksizes.len() != node.links.len() {
                    return Err(VerifyError::BlocksizesMismatch {
                        cid,
                        links: node.links.len(),
                        blocksizes: fs.blocksizes.len(),
                    });
                }
                let own = fs.data.unwrap_or_default();
                let actual = fs
                    .blocksizes
                    .iter()
                    .try_fold(own.len() as u64, |acc, &b| acc.checked_add(b))
                    .unwrap_or(u64::MAX);
                // Leaves may omit filesize (old Raw-type leaves); nodes with links must declare it.
                if fs.filesize.is_some_and(|f| f != actual)
                    || (fs.filesize.is_none() && !node.links.is_empty())
                {
                    return Err(VerifyError::FilesizeMismatch {
                        cid,
                        declared: fs.filesize,
                        actual,
                    });
                }
                let mut links = Vec::with_capacity(node.links.len());
                for (link, &size) in node.links.iter().zip(&fs.blocksizes) {
                    let child = Cid::from_bytes(link.hash).map_err(|e| match e {
                        CidError::UnsupportedCodec(c) => VerifyError::UnsupportedCodec(c),
                        CidError::UnsupportedHash(h) => VerifyError::UnsupportedHash(h),
                        other => VerifyError::BadLink(other),
                    })?;
                    links.push(Child { cid: child, size });
                }
                (own, links, actual)
            }
        };
        if is_root {
            if filesize > self.limits.max_file_bytes {
                return Err(VerifyError::FileTooLarge {
                    size: filesize,
                    max: self.limits.max_file_bytes,
                });
            }
            self.declared = Some(filesize);
        }
        if !links.is_empty() && depth + 1 > self.limits.max_depth {
            return Err(VerifyError::DepthExceeded {
                max: self.limits.max_depth,
            });
        }
        let start = self.written;
        out.append(file_data)
            .map_err(|e| VerifyError::Output(e.into()))?;
        self.written += file_data.len() as u64;
        if links.is_empty() {
            self.finish_child(&cid, file_data.len() as u64)?;
            self.completed.insert(cid, (start, file_data.len() as u64));
        } else {
            self.stack.push(Frame {
                cid,
                children: links,
                next: 0,
                start,
                filesize,
                depth,
            });
        }
        Ok(())
    }

    /// Records that the subtree `cid` produced `actual` bytes and closes finished parents.
    fn finish_child(&mut self, cid: &Cid, actual: u64) -> Result<(), VerifyError> {
        let mut cid = cid.clone();
        let mut actual = actual;
        loop {
            let Some(parent) = self.stack.last_mut() else {
                return Ok(());
            };
            let Some(child) = parent.children.get(parent.next) else {
                return Ok(());
            };
            if child.size != actual {
                return Err(VerifyError::ChildSizeMismatch {
                    cid,
                    declared: child.size,
                    actual,
                });
            }
            parent.next += 1;
            if parent.next < parent.children.len() {
                return Ok(());
            }
            let Some(done) = self.stack.pop() else {
                return Ok(());
            };
            actual = self.written - done.start;
            if actual != done.filesize {
                return Err(VerifyError::FilesizeMismatch {
                    cid: done.cid,
                    declared: Some(done.filesize),
                    actual,
                });
            }
            self.completed
                .insert(done.cid.clone(), (done.start, actual));
            cid = done.cid;
        }
    }
}

fn copy_within(out: &mut impl VerifyOutput, offset: u64, len: u64) -> Result<(), VerifyError> {
    let io = |e: std::io::Error| VerifyError::Output(e.into());
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        out.read_at(offset + done, chunk).map_err(io)?;
        out.append(chunk).map_err(io)?;
        done += n as u64;
    }
    Ok(())
}
