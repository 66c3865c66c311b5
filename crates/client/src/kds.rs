//! A client of AMD's Key Distribution Service (or any mirror with the same
//! paths): fetches the VCEK of a chip for a reported TCB, and a product's
//! certificate chain (ASK + ARK), with an on-disk cache. What it fetches is
//! never trusted by itself: the SEV-SNP verifier checks it against the
//! pinned ARK and the report.
//!
//! Paths: `GET {base}/vcek/v1/{Product}/{hwid hex}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=`
//! (Turin: `fmcSPL` too, and the hwid is the first 8 bytes of the chip id),
//! `GET {base}/vcek/v1/{Product}/cert_chain` (PEM).

use std::path::{Path, PathBuf};
use std::time::Duration;

use attesta_evidence::pem;
use attesta_evidence::snp::{AttestationReport, Product, SigningKey, Tcb};

/// Largest KDS answer read (a certificate or a two-certificate PEM chain).
pub const MAX_KDS_BODY: usize = 64 * 1024;

/// Why the KDS could not supply a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KdsError {
    /// The base URL is not http(s).
    #[error("KDS base URL {0:?} is not http(s)")]
    BadUrl(String),
    /// The report is VLEK-signed: VLEKs are not served by the KDS.
    #[error("the report is signed by a VLEK, which the KDS does not serve; supply it with --vcek")]
    Vlek,
    /// The chip id is masked (all zero): nothing to look up.
    #[error("the report's chip id is masked (zero): the VCEK cannot be looked up")]
    MaskedChipId,
    /// Transport failure.
    #[error("KDS request {url} failed")]
    Transport {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A non-success status.
    #[error("KDS answered {status} for {url}")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The answer exceeds [`MAX_KDS_BODY`].
    #[error("KDS answer for {0} is larger than {MAX_KDS_BODY} bytes")]
    TooLarge(String),
    /// The chain is not PEM certificates.
    #[error("KDS cert_chain is not PEM certificates")]
    Pem(#[source] pem::PemError),
    /// Reading or writing the cache failed.
    #[error("KDS cache {path}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// AMD's Key Distribution Service.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";

/// Fetches VCEKs and certificate chains, caching them on disk.
#[derive(Debug, Clone)]
pub struct KdsClient {
    base: String,
    http: reqwest::Client,
    cache: Option<PathBuf>,
}

impl KdsClient {
    /// A client of the KDS at `base_url`, caching under `cache_dir` when given.
    pub fn new(
        base_url: &str,
        cache_dir: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, KdsError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(KdsError::BadUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| KdsError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(KdsClient {
            base,
            http,
            cache: cache_dir,
        })
    }

    /// The VCEK (DER) of `chip_id` for `tcb` on `product`.
    pub async fn vcek(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: Tcb,
    ) -> Result<Vec<u8>, KdsError> {
        if chip_id.iter().all(|&b| b == 0) {
            return Err(KdsError::MaskedChipId);
        }
        let hwid = if product.has_fmc() {
            hex::encode(chip_id.get(..8).unwrap_or_default())
        } else {
            hex::encode(chip_id)
        };
        let mut query = format!(
            "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            query.push_str(&format!("&fmcSPL={fmc}"));
        }
        let url = format!("{}/vcek/v1/{product}/{hwid}?{query}", self.base);
        let key = format!(
            "{product}/{hwid}-{}-{}-{}-{}-{}.der",
            tcb.fmc.unwrap_or(0),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        self.cached_get(&url, &key).await
    }

    /// The ASK and ARK (DER) of `product`.
    pub async fn cert_chain(&self, product: Product) -> Result<Vec<Vec<u8>>, KdsError> {
        let url = format!("{}/vcek/v1/{product}/cert_chain", self.base);
        let body = self
            .cached_get(&url, &format!("{product}/cert_chain.pem"))
            .await?;
        pem::certificates(&String::from_utf8_lossy(&body)).map_err(KdsError::Pem)
    }

    /// The VCEK and chain for a VCEK-signed report. The product comes from
    /// the report's CPUID (v3+); v2 reports try each product in turn (the
    /// verifier still requires the VCEK's product to chain to its ARK).
    pub async fn certs_for(&self, report: &AttestationReport) -> Result<Vec<Vec<u8>>, KdsError> {
        if report.signing_key().ok() == Some(SigningKey::Vlek) {
            return Err(KdsError::Vlek);
        }
        let products: Vec<Product> = match report.cpuid_product() {
            Some(Ok(p)) => vec![p],
            _ => Product::ALL.to_vec(),
        };
        let mut last = None;
        for p in products {
            match self
                .vcek(p, &report.chip_id, report.reported_tcb.decode(p))
                .await
            {
                Ok(vcek) => {
                    let mut out = vec![vcek];
                    out.extend(self.cert_chain(p).await?);
                    return Ok(out);
                }
                Err(
                    e @ KdsError::Status {
                        status: 400 | 404, ..
                    },
                ) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(KdsError::MaskedChipId))
    }

    async fn cached_get(&self, url: &str, key: &str) -> Result<Vec<u8>, KdsError> {
        let path = self.cache.as_ref().map(|d| d.join(key));
        if let Some(p) = &path
            && let Ok(bytes) = std::fs::read(p)
        {
            return Ok(bytes);
        }
        let body = self.get(url).await?;
        if let Some(p) = &path {
            store(p, &body)?;
        }
        Ok(body)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, KdsError> {
        let transport = |source| KdsError::Transport {
            url: url.to_owned(),
            source,
        };
        let mut resp = self.http.get(url).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(KdsError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_KDS_BODY {
                return Err(KdsError::TooLarge(url.to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Writes a cache file atomically (temp file + rename).
fn store(path: &Path, bytes: &[u8]) -> Result<(), KdsError> {
    let err = |source| KdsError::Cache {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
