//! Outbound HTTPS for discovery and JWKS: one client per issuer, configured so that nothing
//! but the operator decides where it goes and how long and how much it reads.

use std::time::Duration;

use reqwest::{Client, redirect};

/// Why a discovery or JWKS fetch failed. Messages name URLs from the configuration only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Connection, TLS, timeout or protocol failure.
    #[error("request to {url} failed: {message}")]
    Request {
        /// The configured or discovered URL.
        url: String,
        /// The cause chain.
        message: String,
    },
    /// Anything but 200 (redirects are not followed).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body exceeded `keys.maxResponseBytes`.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The body is not the JSON document we expect.
    #[error("{url} did not return a valid {what}")]
    InvalidDocument {
        /// The URL.
        url: String,
        /// "discovery document" or "JWKS".
        what: &'static str,
    },
    /// Discovery named a different issuer than the configured one.
    #[error("discovery document at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// `jwks_uri` is missing or not https.
    #[error("discovery document at {url} has no https jwks_uri")]
    BadJwksUri {
        /// The discovery URL.
        url: String,
    },
    /// The JWKS parsed but not one key passed admission.
    #[error("JWKS at {url} contains no usable signing key ({dropped} keys ignored)")]
    NoUsableKeys {
        /// The JWKS URL.
        url: String,
        /// How many keys were ignored.
        dropped: usize,
    },
}

/// Builds the client used for one issuer. With a `certificateAuthority`, only that bundle is
/// trusted; otherwise the platform's roots. No redirects, no proxy from the environment,
/// https only, bounded connect and total time.
pub fn issuer_client(ca_pem: Option<&str>, connect: Duration, total: Duration) -> Result<Client, String> {
    let mut builder = Client::builder()
        .https_only(true)
        .redirect(redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(concat!("tokenreview-gateway/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("certificateAuthority is not a valid PEM bundle: {e}"))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| format!("cannot build HTTPS client: {e}"))
}

/// GETs `url` and returns the body, refusing anything but a 200 of at most `limit` bytes.
pub async fn get_bounded(client: &Client, url: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
    let request_err = |e: reqwest::Error| FetchError::Request { url: url.to_string(), message: error_chain(&e) };
    let mut response =
        client.get(url).header(reqwest::header::ACCEPT, "application/json").send().await.map_err(request_err)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status { url: url.to_string(), status: response.status().as_u16() });
    }
    let too_large = || FetchError::TooLarge { url: url.to_string(), limit };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_err)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
