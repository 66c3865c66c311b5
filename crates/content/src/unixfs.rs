//! Building blocks for hand-made UnixFS DAGs (tools, tests, tamper cases) and DFS ordering.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use crate::car;
use crate::cid::{Cid, Codec, sha256};
use crate::pb;

/// A dag-pb UnixFS File node with optional inline data and links `(child, tsize, blocksize)`.
/// `filesize` is written as given, so callers can also build inconsistent (lying) nodes.
pub fn file_node(data: Option<&[u8]>, filesize: u64, links: &[(Cid, u64, u64)]) -> Vec<u8> {
    let blocksizes: Vec<u64> = links.iter().map(|l| l.2).collect();
    let pb_links: Vec<(Vec<u8>, u64)> = links.iter().map(|l| (l.0.to_bytes(), l.1)).collect();
    pb::encode_node(
        &pb_links,
        &pb::encode_unixfs_file(data, filesize, &blocksizes),
    )
}

/// A dag-pb node with arbitrary UnixFS type and raw link hashes (for negative tests).
pub fn raw_node(
    unixfs_type: u64,
    link_hashes: &[Vec<u8>],
    blocksizes: &[u64],
    filesize: u64,
) -> Vec<u8> {
    let mut fs = Vec::new();
    crate::varint::encode(0x08, &mut fs);
    crate::varint::encode(unixfs_type, &mut fs);
    crate::varint::encode(0x18, &mut fs);
    crate::varint::encode(filesize, &mut fs);
    for &b in blocksizes {
        crate::varint::encode(0x20, &mut fs);
        crate::varint::encode(b, &mut fs);
    }
    let links: Vec<(Vec<u8>, u64)> = link_hashes.iter().map(|h| (h.clone(), 0)).collect();
    pb::encode_node(&links, &fs)
}

/// CIDv1 dag-pb of a block.
pub fn dag_pb_cid(block: &[u8]) -> Cid {
    Cid::v1(Codec::DagPb, sha256(block))
}

/// Links of a dag-pb block (empty for raw blocks or undecodable ones).
pub fn links_of(cid: &Cid, block: &[u8]) -> Vec<Cid> {
    if cid.codec() != Codec::DagPb {
        return Vec::new();
    }
    pb::decode_node(block)
        .map(|n| {
            n.links
                .iter()
                .filter_map(|l| Cid::from_bytes(l.hash).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a CARv1 of the DAG under `root` with blocks in DFS pre-order, each block once
/// (the order trustless gateways use for `dfs`). Missing blocks are skipped.
pub fn write_car_dfs(
    out: &mut impl Write,
    root: &Cid,
    blocks: &HashMap<Cid, Vec<u8>>,
) -> std::io::Result<()> {
    car::write_header(out, root)?;
    let mut seen = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid.clone()) {
            continue;
        }
        let Some(block) = blocks.get(&cid) else {
            continue;
        };
        car::write_block(out, &cid, block)?;
        stack.extend(links_of(&cid, block).into_iter().rev());
    }
    Ok(())
}
