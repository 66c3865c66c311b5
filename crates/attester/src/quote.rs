//! Where the 64-byte report data sits in each hardware format, so a producer
//! can confirm the blob it read answers the request it wrote.
#![deny(clippy::indexing_slicing)]

/// SGX DCAP quote v3: 48-byte header, report body with report_data at 320.
pub(crate) const SGX_REPORT_DATA: usize = 48 + 320;
/// TDX quote v4: 48-byte header, TD report body with report_data at 520.
pub(crate) const TDX_V4_REPORT_DATA: usize = 48 + 520;
/// TDX quote v5: the body is preceded by type (2) and size (4).
pub(crate) const TDX_V5_REPORT_DATA: usize = 48 + 6 + 520;
/// SEV-SNP attestation report: report_data at 0x50.
pub(crate) const SNP_REPORT_DATA: usize = 0x50;

/// The report data of a TDX quote (version 4 or 5), if the blob is one.
pub(crate) fn tdx_report_data(quote: &[u8]) -> Option<&[u8]> {
    let version = u16::from_le_bytes([*quote.first()?, *quote.get(1)?]);
    let at = match version {
        4 => TDX_V4_REPORT_DATA,
        5 => TDX_V5_REPORT_DATA,
        _ => return None,
    };
    quote.get(at..at + 64)
}

/// The report data of an SNP report.
pub(crate) fn snp_report_data(report: &[u8]) -> Option<&[u8]> {
    report.get(SNP_REPORT_DATA..SNP_REPORT_DATA + 64)
}

/// The report data of an SGX quote v3.
pub(crate) fn sgx_report_data(quote: &[u8]) -> Option<&[u8]> {
    quote.get(SGX_REPORT_DATA..SGX_REPORT_DATA + 64)
}
