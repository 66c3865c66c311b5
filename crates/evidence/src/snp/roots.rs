//! The AMD roots: one ARK per product, pinned by the SHA-256 of its DER,
//! plus the ASK (VCEK issuer) and, where AMD publishes it, the ASVK (VLEK
//! issuer). Embedded so trust never depends on what a node or a KDS mirror
//! sends; intermediates sent along are still accepted when the pinned ARK
//! signed them.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest;

use crate::pem;
use crate::roots::RootError;
use crate::snp::certs::{self, SnpCert};
use crate::snp::report::Product;

/// SHA-256 of the DER of ARK-Milan.
pub const ARK_MILAN_SHA256: &str =
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";
/// SHA-256 of the DER of ARK-Genoa.
pub const ARK_GENOA_SHA256: &str =
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1";
/// SHA-256 of the DER of ARK-Turin.
pub const ARK_TURIN_SHA256: &str =
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a";

struct Embedded {
    product: Product,
    ark_pem: &'static str,
    ark_sha256: &'static str,
    intermediates: &'static [(&'static str, &'static str)],
}

const EMBEDDED: [Embedded; 3] = [
    Embedded {
        product: Product::Milan,
        ark_pem: include_str!("../roots/amd/milan_ark.pem"),
        ark_sha256: ARK_MILAN_SHA256,
        intermediates: &[
            ("ASK-Milan", include_str!("../roots/amd/milan_ask.pem")),
            ("ASVK-Milan", include_str!("../roots/amd/milan_asvk.pem")),
        ],
    },
    Embedded {
        product: Product::Genoa,
        ark_pem: include_str!("../roots/amd/genoa_ark.pem"),
        ark_sha256: ARK_GENOA_SHA256,
        intermediates: &[("ASK-Genoa", include_str!("../roots/amd/genoa_ask.pem"))],
    },
    Embedded {
        product: Product::Turin,
        ark_pem: include_str!("../roots/amd/turin_ark.pem"),
        ark_sha256: ARK_TURIN_SHA256,
        intermediates: &[("ASK-Turin", include_str!("../roots/amd/turin_ask.pem"))],
    },
];

/// The trust anchor of one product: its ARK and known intermediates.
#[derive(Debug, Clone)]
pub struct ProductRoot {
    /// The product.
    pub product: Product,
    /// Human name for reports (`ARK-Milan`, or the dev root's name).
    pub name: String,
    pub(crate) ark: Arc<SnpCert>,
    pub(crate) intermediates: Vec<Arc<SnpCert>>,
}

impl ProductRoot {
    /// The ARK's DER.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark.der
    }

    /// SHA-256 of the ARK's DER, hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(digest::digest(&digest::SHA256, &self.ark.der))
    }
}

fn der_of(pem_text: &str) -> Result<Vec<u8>, RootError> {
    pem::certificates(pem_text)?
        .into_iter()
        .next()
        .ok_or(RootError::Pem(pem::PemError::NoCertificate))
}

fn load() -> Result<Vec<ProductRoot>, RootError> {
    EMBEDDED
        .iter()
        .map(|e| {
            let name = format!("ARK-{}", e.product);
            let der = der_of(e.ark_pem)?;
            let got = hex::encode(digest::digest(&digest::SHA256, &der));
            if got != e.ark_sha256 {
                return Err(RootError::Fingerprint {
                    expected: e.ark_sha256.to_owned(),
                    got,
                });
            }
            let ark = certs::parse(&name, &der).map_err(RootError::Certificate)?;
            let intermediates = e
                .intermediates
                .iter()
                .map(|(n, p)| {
                    let der = der_of(p)?;
                    certs::parse(n, &der)
                        .map(Arc::new)
                        .map_err(RootError::Certificate)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ProductRoot {
                product: e.product,
                name,
                ark: Arc::new(ark),
                intermediates,
            })
        })
        .collect()
}

/// The pinned AMD roots for Milan, Genoa and Turin (parsed once per process).
pub fn amd_roots() -> Result<&'static [ProductRoot], RootError> {
    static ROOTS: OnceLock<Result<Vec<ProductRoot>, RootError>> = OnceLock::new();
    match ROOTS.get_or_init(load) {
        Ok(v) => Ok(v.as_slice()),
        Err(e) => Err(e.clone()),
    }
}

/// A dev ARK (danger API only): any chain ending in exactly these DER bytes
/// verifies, for any product, and is always reported as insecure.
#[derive(Debug, Clone)]
pub struct SnpDevRoot {
    pub(crate) ark: Arc<SnpCert>,
    name: String,
}

impl SnpDevRoot {
    /// Trusts the self-signed dev ARK with exactly these DER bytes.
    pub fn from_der(name: &str, der: &[u8]) -> Result<Self, RootError> {
        let ark = certs::parse(name, der).map_err(RootError::Certificate)?;
        Ok(SnpDevRoot {
            ark: Arc::new(ark),
            name: name.to_owned(),
        })
    }

    /// Trusts the first certificate of a PEM text.
    pub fn from_pem(name: &str, pem_text: &str) -> Result<Self, RootError> {
        Self::from_der(name, &der_of(pem_text)?)
    }

    /// The name shown in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trusted DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.ark.der
    }
}
