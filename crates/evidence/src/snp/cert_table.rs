//! The SEV-SNP certificate table that `SNP_GET_EXT_REPORT` (and Linux
//! configfs-tsm `auxblob`) returns beside a report: entries of
//! `{guid[16], offset u32 LE, length u32 LE}`, ended by an all-zero entry,
//! offsets relative to the table start (GHCB spec, "SNP Extended Guest Request").

/// Most entries read (the spec defines four kinds).
pub const MAX_ENTRIES: usize = 16;

/// GUID of the VCEK entry (`63da758d-e664-4564-adc5-f4b93be8accd`), as stored.
pub const GUID_VCEK: [u8; 16] = guid(
    0x63da_758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
/// GUID of the VLEK entry (`a8074bc2-a25a-483e-aae6-39c045a0b8a1`).
pub const GUID_VLEK: [u8; 16] = guid(
    0xa807_4bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);
/// GUID of the ASK entry (`4ab7b379-bbac-4fe4-a02f-05aef327c782`).
pub const GUID_ASK: [u8; 16] = guid(
    0x4ab7_b379,
    0xbbac,
    0x4fe4,
    [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
);
/// GUID of the ARK entry (`c0b406a4-a803-4952-9743-3fb6014cd0ae`).
pub const GUID_ARK: [u8; 16] = guid(
    0xc0b4_06a4,
    0xa803,
    0x4952,
    [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
);

/// A GUID in its stored (mixed-endian, EFI) byte order.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Why a certificate table is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// The table ends before its terminating entry.
    #[error("certificate table is not terminated")]
    Unterminated,
    /// An entry points outside the table.
    #[error("certificate table entry {0} points outside the table")]
    OutOfBounds(usize),
    /// More entries than [`MAX_ENTRIES`].
    #[error("certificate table has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
}

/// The certificates (DER) of the known kinds (VCEK, VLEK, ASK, ARK), in
/// table order; entries of other kinds are skipped.
pub fn parse(table: &[u8]) -> Result<Vec<Vec<u8>>, CertTableError> {
    let mut out = Vec::new();
    for i in 0..=MAX_ENTRIES {
        let at = i * 24;
        let entry = table.get(at..at + 24).ok_or(CertTableError::Unterminated)?;
        if entry.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        if i == MAX_ENTRIES {
            return Err(CertTableError::TooManyEntries);
        }
        let (g, rest) = entry.split_at(16);
        let (off, len) = rest.split_at(4);
        let off = u32::from_le_bytes(off.try_into().unwrap_or_default()) as usize;
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        let der = table
            .get(off..off.saturating_add(len))
            .filter(|_| off.checked_add(len).is_some())
            .ok_or(CertTableError::OutOfBounds(i))?;
        if [GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK]
            .iter()
            .any(|k| k.as_slice() == g)
        {
            out.push(der.to_vec());
        }
    }
    Err(CertTableError::TooManyEntries)
}

/// Builds a table (for the dev-snp TEE and tests).
pub fn build(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let header = (entries.len() + 1) * 24;
    let mut out = Vec::with_capacity(header + entries.iter().map(|(_, d)| d.len()).sum::<usize>());
    let mut off = header;
    for (g, der) in entries {
        out.extend_from_slice(g);
        out.extend_from_slice(&u32::try_from(off).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
        off += der.len();
    }
    out.extend_from_slice(&[0u8; 24]);
    for (_, der) in entries {
        out.extend_from_slice(der);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_tables() {
        let t = build(&[
            (GUID_VCEK, b"vcek"),
            ([9; 16], b"other"),
            (GUID_ARK, b"ark"),
        ]);
        assert_eq!(parse(&t), Ok(vec![b"vcek".to_vec(), b"ark".to_vec()]));
        assert_eq!(parse(&t[..20]), Err(CertTableError::Unterminated));
        assert_eq!(parse(&t[..30]), Err(CertTableError::OutOfBounds(0)));
        assert_eq!(parse(&[]), Err(CertTableError::Unterminated));
        let mut bad = t.clone();
        bad[16] = 0xff;
        bad[17] = 0xff;
        assert_eq!(parse(&bad), Err(CertTableError::OutOfBounds(0)));
        assert_eq!(parse(&[0u8; 24]), Ok(vec![]));
        let many: Vec<([u8; 16], &[u8])> = (0..20).map(|_| (GUID_ASK, &b"x"[..])).collect();
        assert_eq!(parse(&build(&many)), Err(CertTableError::TooManyEntries));
    }
}
