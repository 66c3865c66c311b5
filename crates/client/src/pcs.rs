//! A collateral client for Intel DCAP: fetches TCB info, QE identity and
//! CRLs from Intel PCS or any PCCS (v4 API, base URL configurable) and
//! caches them per (TEE, FMSPC, PCK CA) until the earliest `nextUpdate`.
//! What it fetches is only parsed here; trust comes from the verifier,
//! which checks every signature against the pinned Intel root.
//! Concurrent requests for one platform's collateral share one fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_cache::SingleFlight;
use attesta_evidence::UnixTime;
use attesta_evidence::dcap::{
    Collateral, CollateralError, DcapError, MAX_COLLATERAL_LEN, PckIdentity, PcsFiles, Quote,
    QuoteError, TeeType,
};

/// Intel's Provisioning Certification Service (the v4 API lives below it).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX Root CA's CRL (Intel PCS does not serve it; a PCCS does).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Most collateral sets kept (one per platform type the caller meets).
pub const MAX_CACHED: usize = 256;

/// Why collateral could not be fetched. Cloneable: every caller sharing one fetch gets it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PcsError {
    /// The base URL is not http(s).
    #[error("PCS/PCCS URL {0:?} is not http(s)")]
    Url(String),
    /// Connecting or reading failed.
    #[error("fetching {url}")]
    Transport {
        /// What was fetched.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// A non-200 answer.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// A response larger than the collateral limit.
    #[error("{url} sent more than {MAX_COLLATERAL_LEN} bytes")]
    TooLarge {
        /// What was fetched.
        url: String,
    },
    /// The issuer-chain header is missing or not URL-encoded PEM.
    #[error("{url}: header {header} missing or malformed")]
    Header {
        /// What was fetched.
        url: String,
        /// Header name.
        header: &'static str,
    },
    /// The quote does not parse.
    #[error("quote")]
    Quote(#[source] QuoteError),
    /// The quote's PCK certificate does not say which platform it is.
    #[error("PCK certificate")]
    Pck(#[source] DcapError),
    /// What was fetched is not collateral.
    #[error("collateral")]
    Collateral(#[source] Arc<CollateralError>),
}

struct Entry {
    collateral: Arc<Collateral>,
    until: UnixTime,
}

/// Fetches and caches DCAP collateral. Cheap to share (`&self` methods).
pub struct PcsClient {
    base: String,
    root_ca_crl_url: String,
    http: reqwest::Client,
    cache: Mutex<HashMap<PckIdentity, Entry>>,
    /// Fetches in progress, one per platform.
    flights: SingleFlight<PckIdentity, Result<Arc<Collateral>, PcsError>>,
}

impl std::fmt::Debug for PcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcsClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes (PCS URL-encodes the PEM issuer chains in headers).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl PcsClient {
    /// A client of the PCS/PCCS API at `base_url` (the part before
    /// `/sgx/certification/v4/...`). The root CA CRL comes from
    /// `<base>/sgx/certification/v4/rootcacrl` (as a PCCS serves it), from Intel's
    /// distribution point when `base_url` is [`INTEL_PCS_URL`], or from
    /// [`PcsClient::with_root_ca_crl_url`].
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, PcsError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PcsError::Url(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| PcsError::Transport {
                url: base.clone(),
                source: Arc::new(source),
            })?;
        let root_ca_crl_url = if base == INTEL_PCS_URL {
            INTEL_ROOT_CA_CRL_URL.to_owned()
        } else {
            format!("{base}/sgx/certification/v4/rootcacrl")
        };
        Ok(PcsClient {
            root_ca_crl_url,
            base,
            http,
            cache: Mutex::new(HashMap::new()),
            flights: SingleFlight::new(),
        })
    }

    /// Fetches the root CA CRL (DER, or hex as some PCCS serve it) from this URL.
    pub fn with_root_ca_crl_url(mut self, url: &str) -> Self {
        url.clone_into(&mut self.root_ca_crl_url);
        self
    }

    /// Number of cached collateral sets.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// Collateral for the platform that produced `quote`, from the cache
    /// while every part is current at `now`, else fetched.
    pub async fn for_quote(
        &self,
        quote: &[u8],
        now: UnixTime,
    ) -> Result<Arc<Collateral>, PcsError> {
        let q = Quote::parse(quote).map_err(PcsError::Quote)?;
        let id = PckIdentity::of(&q).map_err(PcsError::Pck)?;
        self.collateral(id, now).await
    }

    /// Collateral for one platform (TEE, FMSPC, PCK CA). Concurrent calls for
    /// one platform share one fetch (their `now`s are taken as the same
    /// moment); a failure is not cached.
    pub async fn collateral(
        &self,
        id: PckIdentity,
        now: UnixTime,
    ) -> Result<Arc<Collateral>, PcsError> {
        if let Some(c) = self.current(id, now) {
            return Ok(c);
        }
        self.flights
            .run(id, || async {
                // Again: a flight that ended since the look above stored it.
                if let Some(c) = self.current(id, now) {
                    return Ok(c);
                }
                let c = Arc::new(self.fetch(id).await?);
                self.store(id, &c, now);
                Ok(c)
            })
            .await
    }

    /// The cached collateral of `id` if every part is current at `now`.
    fn current(&self, id: PckIdentity, now: UnixTime) -> Option<Arc<Collateral>> {
        let cache = self.cache.lock().ok()?;
        let e = cache.get(&id)?;
        (now < e.until).then(|| Arc::clone(&e.collateral))
    }

    fn store(&self, id: PckIdentity, c: &Arc<Collateral>, now: UnixTime) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, e| now < e.until);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                id,
                Entry {
                    collateral: Arc::clone(c),
                    until: c.next_update(),
                },
            );
        }
    }

    async fn fetch(&self, id: PckIdentity) -> Result<Collateral, PcsError> {
        let tee = match id.tee {
            TeeType::Sgx => "sgx",
            TeeType::Tdx => "tdx",
        };
        let base = &self.base;
        let fmspc = hex::encode_upper(id.fmspc);
        let tcb_url = format!("{base}/{tee}/certification/v4/tcb?fmspc={fmspc}");
        let qe_url = format!("{base}/{tee}/certification/v4/qe/identity");
        let crl_url = format!(
            "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            id.ca.as_str()
        );
        let (tcb, chain) = self.get(&tcb_url, Some("TCB-Info-Issuer-Chain")).await?;
        let (qe, _) = self.get(&qe_url, None).await?;
        let (pck_crl, _) = self.get(&crl_url, None).await?;
        let (root_crl, _) = self.get(&self.root_ca_crl_url, None).await?;
        let chain = chain.unwrap_or_default();
        Collateral::from_pcs(PcsFiles {
            tcb_info_json: &tcb,
            qe_identity_json: &qe,
            pck_crl: &der_or_hex(pck_crl),
            root_ca_crl: &der_or_hex(root_crl),
            tcb_signing_chain_pem: &chain,
        })
        .map_err(|e| PcsError::Collateral(Arc::new(e)))
    }

    /// GETs `url`; returns the body and, when asked, a URL-encoded PEM header.
    async fn get(
        &self,
        url: &str,
        header: Option<&'static str>,
    ) -> Result<(Vec<u8>, Option<String>), PcsError> {
        let transport = |source| PcsError::Transport {
            url: url.to_owned(),
            source: Arc::new(source),
        };
        let mut resp = self.http.get(url).send().await.map_err(transport)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(PcsError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let chain = match header {
            None => None,
            Some(name) => Some(
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(percent_decode)
                    .ok_or_else(|| PcsError::Header {
                        url: url.to_owned(),
                        header: name,
                    })?,
            ),
        };
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_COLLATERAL_LEN {
                return Err(PcsError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, chain))
    }
}

/// Some PCCS serve CRLs as hex text; PCS serves DER.
fn der_or_hex(body: Vec<u8>) -> Vec<u8> {
    let text = std::str::from_utf8(&body).map(str::trim).unwrap_or("");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).unwrap_or(body)
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERT%0A").as_deref(),
            Some("-----BEGIN CERT\n")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(der_or_hex(b"0a0b\n".to_vec()), vec![0x0a, 0x0b]);
        assert_eq!(der_or_hex(vec![0x30, 0x82]), vec![0x30, 0x82]);
    }
}
