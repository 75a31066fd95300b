//! Outbound HTTPS for discovery, JWKS, userinfo and introspection: one client per issuer or
//! endpoint, configured so that nothing but the operator decides where it goes and how long and
//! how much it reads.

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
    /// The response is not declared as JSON.
    #[error("{url} did not answer with a JSON content type")]
    NotJson {
        /// The URL.
        url: String,
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
        /// "discovery document", "JWKS", "userinfo response" or "introspection response".
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

impl FetchError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Request { .. } => "request_failed",
            FetchError::Status { .. } => "http_status",
            FetchError::NotJson { .. } => "not_json",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::InvalidDocument { .. } => "invalid_document",
            FetchError::IssuerMismatch { .. } => "issuer_mismatch",
            FetchError::BadJwksUri { .. } => "bad_jwks_uri",
            FetchError::NoUsableKeys { .. } => "no_usable_keys",
        }
    }
}

/// A successful response.
pub struct Fetched {
    /// The body, at most the configured size.
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, when present.
    pub max_age: Option<Duration>,
}

/// Builds the client used for one issuer or endpoint. With a `certificateAuthority`, only that bundle is
/// trusted; otherwise the platform's roots. No redirects, no proxy from the environment,
/// https only, bounded connect and total time.
pub fn issuer_client(
    ca_pem: Option<&str>,
    connect: Duration,
    total: Duration,
    allow_loopback_http: bool,
) -> Result<Client, String> {
    issuer_client_builder(ca_pem, connect, total, allow_loopback_http)?
        .build()
        .map_err(|e| format!("cannot build HTTPS client: {e}"))
}

/// The builder behind [`issuer_client`], for a caller that must tune one more setting.
pub fn issuer_client_builder(
    ca_pem: Option<&str>,
    connect: Duration,
    total: Duration,
    allow_loopback_http: bool,
) -> Result<reqwest::ClientBuilder, String> {
    let mut builder = Client::builder()
        .https_only(!allow_loopback_http)
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
    Ok(builder)
}

/// GETs `url` and returns the body, refusing anything but a JSON 200 of at most `limit` bytes.
pub async fn get_bounded(client: &Client, url: &str, limit: usize) -> Result<Fetched, FetchError> {
    send_bounded(client.get(url), url, limit).await
}

/// Sends `request` (to `url`, named in errors) with the same rules as [`get_bounded`].
pub async fn send_bounded(request: reqwest::RequestBuilder, url: &str, limit: usize) -> Result<Fetched, FetchError> {
    send(request, url, limit, Expect::Json).await.map(|(_, fetched)| fetched)
}

/// [`send_bounded`] for an answer that is a JWT (a distributed claims source): any content
/// type, since the body is verified as a signed token anyway.
pub async fn send_bounded_jwt(
    request: reqwest::RequestBuilder,
    url: &str,
    limit: usize,
) -> Result<Fetched, FetchError> {
    send(request, url, limit, Expect::Jwt).await.map(|(_, fetched)| fetched)
}

/// [`send_bounded`] for endpoints that answer errors as JSON with a 4xx status (an OAuth 2.0
/// token endpoint, RFC 6749 5.2): any status with a JSON body is returned with that status.
pub async fn send_bounded_any_status(
    request: reqwest::RequestBuilder,
    url: &str,
    limit: usize,
) -> Result<(u16, Fetched), FetchError> {
    send(request, url, limit, Expect::JsonAnyStatus).await
}

/// What an answer must be for [`send`] to read its body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A JSON 200.
    Json,
    /// JSON with any status (errors of an OAuth 2.0 endpoint).
    JsonAnyStatus,
    /// A 200 of any content type (a JWT, verified by the caller).
    Jwt,
}

async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
    limit: usize,
    expect: Expect,
) -> Result<(u16, Fetched), FetchError> {
    let request_err = |e: reqwest::Error| FetchError::Request { url: url.to_string(), message: error_chain(&e) };
    let accept = if expect == Expect::Jwt { "application/jwt" } else { "application/json" };
    let mut response = request.header(reqwest::header::ACCEPT, accept).send().await.map_err(request_err)?;
    let status = response.status().as_u16();
    if expect != Expect::JsonAnyStatus && response.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status { url: url.to_string(), status });
    }
    let headers = response.headers();
    let is_json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        });
    if expect != Expect::Jwt && !is_json && status != 200 {
        return Err(FetchError::Status { url: url.to_string(), status });
    }
    if expect != Expect::Jwt && !is_json {
        return Err(FetchError::NotJson { url: url.to_string() });
    }
    let max_age = headers.get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(parse_max_age);
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
    Ok((status, Fetched { body, max_age }))
}

/// `max-age=N` from a Cache-Control value; `no-cache`/`no-store` count as 0 (the caller's lower
/// bound then applies).
fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            max_age = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    max_age
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(parse_max_age("public, max-age=3600"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_max_age("max-age=\"60\", must-revalidate"), Some(Duration::from_secs(60)));
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("private"), None);
        assert_eq!(parse_max_age("max-age=soon"), None);
    }
}
