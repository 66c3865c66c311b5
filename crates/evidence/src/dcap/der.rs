//! A minimal DER reader for the few structures X.509 libraries do not
//! decode for us: Intel's SGX extension inside the PCK certificate.

/// One TLV: its tag and content bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    /// The (single-byte) tag.
    pub tag: u8,
    /// The content octets.
    pub value: &'a [u8],
}

/// Reads TLVs one after another from a byte string.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next TLV, or `None` when the bytes are malformed (definite lengths only).
    pub(crate) fn next_tlv(&mut self) -> Option<Tlv<'a>> {
        let tag = *self.rest.first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags never occur in what we read
        }
        let first = *self.rest.get(1)?;
        let (hdr, len) = if first < 0x80 {
            (2usize, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let len = self
                .rest
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |a, x| (a << 8) | usize::from(*x));
            (2 + n, len)
        };
        let end = hdr.checked_add(len)?;
        let value = self.rest.get(hdr..end)?;
        self.rest = self.rest.get(end..)?;
        Some(Tlv { tag, value })
    }
}

/// DER tag numbers used here.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const ENUMERATED: u8 = 0x0a;
    pub(crate) const SEQUENCE: u8 = 0x30;
}

/// A non-negative INTEGER's value if it fits `u32`.
pub(crate) fn uint(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 5 || value.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let v = value.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tlvs_and_refuses_truncation() {
        let mut r = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x02, 0xaa, 0xbb]);
        assert_eq!(
            r.next_tlv(),
            Some(Tlv {
                tag: 0x02,
                value: &[5]
            })
        );
        assert_eq!(r.next_tlv().map(|t| t.value.len()), Some(2));
        assert!(r.is_empty());
        assert_eq!(Reader::new(&[0x30, 0x05, 0x01]).next_tlv(), None);
        assert_eq!(Reader::new(&[0x30, 0x85, 0, 0, 0, 0, 1]).next_tlv(), None);
        assert_eq!(uint(&[0x00, 0xff]), Some(255));
        assert_eq!(uint(&[0x80]), None);
    }
}
