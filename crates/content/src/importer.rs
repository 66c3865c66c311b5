//! UnixFS importer that reproduces `ipfs add` CIDs for the supported profiles.
//!
//! Streaming and bounded: it holds one chunk plus at most `max_links` pending links per tree
//! level, so memory does not grow with the file size.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use crate::cid::{Cid, Codec, sha256};
use crate::pb;

/// Importer failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[source] std::io::Error),
    /// The block sink refused a block.
    #[error("block sink: {0}")]
    Sink(#[source] std::io::Error),
}

/// How a file is cut into a DAG; each profile matches a real tool's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// `ipfs add` defaults: CIDv0, 256 KiB chunks, 174 links, balanced, dag-pb leaves.
    #[default]
    KuboDefaultV0,
    /// `ipfs add --cid-version=1`: CIDv1, raw leaves, otherwise as the default.
    KuboCidV1RawLeaves,
    /// IPIP-499 `unixfs-v1-2025`: CIDv1, raw leaves, 1 MiB chunks, 1024 links, balanced.
    UnixfsV1_2025,
}

impl Profile {
    /// All profiles, for tools and tests.
    pub const ALL: [Profile; 3] = [
        Profile::KuboDefaultV0,
        Profile::KuboCidV1RawLeaves,
        Profile::UnixfsV1_2025,
    ];

    /// Leaf chunk size in bytes.
    pub fn chunk_size(self) -> usize {
        match self {
            Profile::KuboDefaultV0 | Profile::KuboCidV1RawLeaves => 256 * 1024,
            Profile::UnixfsV1_2025 => 1024 * 1024,
        }
    }

    /// Maximum links per internal node.
    pub fn max_links(self) -> usize {
        match self {
            Profile::KuboDefaultV0 | Profile::KuboCidV1RawLeaves => 174,
            Profile::UnixfsV1_2025 => 1024,
        }
    }

    /// Whether leaves are raw blocks (codec 0x55) rather than UnixFS dag-pb nodes.
    pub fn raw_leaves(self) -> bool {
        !matches!(self, Profile::KuboDefaultV0)
    }

    /// The name used in `vectors.tsv` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::KuboDefaultV0 => "kubo-default-v0",
            Profile::KuboCidV1RawLeaves => "kubo-cidv1-rawleaves",
            Profile::UnixfsV1_2025 => "unixfs-v1-2025",
        }
    }

    fn node_cid(self, block: &[u8]) -> Cid {
        match self {
            Profile::KuboDefaultV0 => Cid::v0(sha256(block)),
            _ => Cid::v1(Codec::DagPb, sha256(block)),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?} (expected kubo-default-v0, kubo-cidv1-rawleaves or unixfs-v1-2025)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, UnknownProfile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// Receives every block the importer produces (leaves first, root last).
pub trait BlockSink {
    /// Accepts one block.
    fn put(&mut self, cid: &Cid, block: &[u8]) -> std::io::Result<()>;
}

/// A sink that drops blocks (when only the CID is wanted).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBlocks;

impl BlockSink for NoBlocks {
    fn put(&mut self, _: &Cid, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlockSink for Vec<(Cid, Vec<u8>)> {
    fn put(&mut self, cid: &Cid, block: &[u8]) -> std::io::Result<()> {
        self.push((cid.clone(), block.to_vec()));
        Ok(())
    }
}

impl<F: FnMut(&Cid, &[u8]) -> std::io::Result<()>> BlockSink for F {
    fn put(&mut self, cid: &Cid, block: &[u8]) -> std::io::Result<()> {
        self(cid, block)
    }
}

#[derive(Debug, Clone)]
struct Link {
    cid: Cid,
    /// Cumulative serialized size of the subtree (dag-pb `Tsize`).
    tsize: u64,
    /// File bytes under the subtree (UnixFS `blocksizes` entry).
    filesize: u64,
}

/// Push-style importer: feed bytes with [`Importer::write`], then [`Importer::finish`].
pub struct Importer<S: BlockSink> {
    profile: Profile,
    chunk: Vec<u8>,
    /// `levels[0]` holds leaves, `levels[k]` nodes of height k, each waiting for a parent.
    levels: Vec<Vec<Link>>,
    leaves: u64,
    sink: S,
}

impl<S: BlockSink> fmt::Debug for Importer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("profile", &self.profile)
            .field("leaves", &self.leaves)
            .finish()
    }
}

impl Importer<NoBlocks> {
    /// An importer that only computes the CID.
    pub fn new(profile: Profile) -> Self {
        Self::with_sink(profile, NoBlocks)
    }
}

impl<S: BlockSink> Importer<S> {
    /// An importer that hands every block to `sink`.
    pub fn with_sink(profile: Profile, sink: S) -> Self {
        Importer {
            profile,
            chunk: Vec::with_capacity(profile.chunk_size()),
            levels: vec![Vec::new()],
            leaves: 0,
            sink,
        }
    }

    /// Feeds file bytes.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), ContentError> {
        let size = self.profile.chunk_size();
        while !data.is_empty() {
            let take = (size - self.chunk.len()).min(data.len());
            let (head, tail) = data.split_at(take);
            self.chunk.extend_from_slice(head);
            data = tail;
            if self.chunk.len() == size {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), ContentError> {
        let chunk = std::mem::take(&mut self.chunk);
        let link = self.leaf(&chunk)?;
        self.chunk = chunk;
        self.chunk.clear();
        self.leaves += 1;
        self.push(0, link)
    }

    fn leaf(&mut self, chunk: &[u8]) -> Result<Link, ContentError> {
        let len = chunk.len() as u64;
        if self.profile.raw_leaves() {
            let cid = Cid::v1(Codec::Raw, sha256(chunk));
            self.sink.put(&cid, chunk).map_err(ContentError::Sink)?;
            Ok(Link {
                cid,
                tsize: len,
                filesize: len,
            })
        } else {
            let block = pb::encode_node(&[], &pb::encode_unixfs_file(Some(chunk), len, &[]));
            let cid = Cid::v0(sha256(&block));
            self.sink.put(&cid, &block).map_err(ContentError::Sink)?;
            Ok(Link {
                cid,
                tsize: block.len() as u64,
                filesize: len,
            })
        }
    }

    /// Adds a finished subtree at `height`, first closing that level if it is already full.
    fn push(&mut self, height: usize, link: Link) -> Result<(), ContentError> {
        let full = self
            .levels
            .get(height)
            .is_some_and(|l| l.len() >= self.profile.max_links());
        if full {
            let children = self
                .levels
                .get_mut(height)
                .map(std::mem::take)
                .unwrap_or_default();
            let parent = self.node(&children)?;
            self.push(height + 1, parent)?;
        }
        if self.levels.len() <= height {
            self.levels.resize_with(height + 1, Vec::new);
        }
        if let Some(level) = self.levels.get_mut(height) {
            level.push(link);
        }
        Ok(())
    }

    fn node(&mut self, children: &[Link]) -> Result<Link, ContentError> {
        let filesize: u64 = children.iter().map(|c| c.filesize).sum();
        let blocksizes: Vec<u64> = children.iter().map(|c| c.filesize).collect();
        let links: Vec<(Vec<u8>, u64)> = children
            .iter()
            .map(|c| (c.cid.to_bytes(), c.tsize))
            .collect();
        let block = pb::encode_node(&links, &pb::encode_unixfs_file(None, filesize, &blocksizes));
        let cid = self.profile.node_cid(&block);
        self.sink.put(&cid, &block).map_err(ContentError::Sink)?;
        let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        Ok(Link {
            cid,
            tsize,
            filesize,
        })
    }

    /// Closes the DAG and returns the root CID and the sink.
    pub fn finish(mut self) -> Result<(Cid, S), ContentError> {
        if !self.chunk.is_empty() || self.leaves == 0 {
            // An empty file is one empty leaf, exactly as kubo does it.
            self.flush_chunk()?;
        }
        let mut height = 0;
        loop {
            let level = self
                .levels
                .get_mut(height)
                .map(std::mem::take)
                .unwrap_or_default();
            let higher = self.levels.iter().skip(height + 1).any(|l| !l.is_empty());
            match level.as_slice() {
                [] if !higher => break,
                [] => {}
                // A lone leaf is its own root; a lone internal node at the top is the root.
                [only] if !higher => return Ok((only.cid.clone(), self.sink)),
                _ => {
                    let parent = self.node(&level)?;
                    self.push(height + 1, parent)?;
                }
            }
            height += 1;
        }
        // Unreachable in practice: at least one leaf was pushed above.
        Err(ContentError::Read(std::io::Error::other(
            "importer produced no root",
        )))
    }
}

/// Computes the CID `ipfs add` would give the bytes of `r` under `profile` (streaming).
pub fn cid_of_reader(r: impl Read, profile: Profile) -> Result<Cid, ContentError> {
    import_reader(r, profile, NoBlocks).map(|(cid, _)| cid)
}

/// Like [`cid_of_reader`] but also hands every block to `sink` (leaves first, root last).
pub fn import_reader<S: BlockSink>(
    mut r: impl Read,
    profile: Profile,
    sink: S,
) -> Result<(Cid, S), ContentError> {
    let mut importer = Importer::with_sink(profile, sink);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContentError::Read(e)),
        };
        importer.write(buf.get(..n).unwrap_or_default())?;
    }
    importer.finish()
}

/// Computes the CID of an in-memory byte string.
pub fn cid_of_bytes(data: &[u8], profile: Profile) -> Cid {
    let mut importer = Importer::new(profile);
    // NoBlocks never fails and there is no reader, so neither error can occur.
    match importer.write(data).and_then(|()| importer.finish()) {
        Ok((cid, _)) => cid,
        Err(_) => Cid::v0([0; 32]),
    }
}
