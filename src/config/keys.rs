//! `keys:`: fetching discovery documents and key sets.

use serde::Deserialize;

/// `keys:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySettings {
    /// JWKS refresh period when the JWKS response has no `Cache-Control: max-age`.
    #[serde(default = "default_refresh_interval_seconds")]
    pub refresh_interval_seconds: u64,
    /// Lower bound applied to a JWKS `max-age` (and to `refreshIntervalSeconds`).
    #[serde(default = "default_min_refresh_seconds")]
    pub min_refresh_seconds: u64,
    /// Upper bound applied to a JWKS `max-age`.
    #[serde(default = "default_max_refresh_seconds")]
    pub max_refresh_seconds: u64,
    /// How often the discovery document itself is fetched again.
    #[serde(default = "default_discovery_refresh_seconds")]
    pub discovery_refresh_seconds: u64,
    /// First retry delay after a failed fetch; doubles (with jitter) up to `maxRetryIntervalSeconds`.
    #[serde(default = "default_retry_interval_seconds")]
    pub retry_interval_seconds: u64,
    /// Longest delay between retries.
    #[serde(default = "default_max_retry_interval_seconds")]
    pub max_retry_interval_seconds: u64,
    /// After this long without a successful fetch, an issuer's keys are no longer trusted: its
    /// tokens get a transient error and `/readyz` fails, until a fetch succeeds again.
    #[serde(default = "default_max_staleness_seconds")]
    pub max_staleness_seconds: u64,
    /// A token with an unknown `kid` triggers at most one JWKS fetch per issuer per this period.
    #[serde(default = "default_unknown_kid_cooldown_seconds")]
    pub unknown_kid_cooldown_seconds: u64,
    /// TCP + TLS connect timeout for discovery and JWKS.
    #[serde(default = "default_connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
    /// Total timeout of one discovery or JWKS request, body included.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Largest discovery or JWKS response accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How long startup waits for every issuer's first key set before serving anyway.
    #[serde(default = "default_startup_wait_seconds")]
    pub startup_wait_seconds: u64,
}

fn default_refresh_interval_seconds() -> u64 {
    3600
}
fn default_min_refresh_seconds() -> u64 {
    300
}
fn default_max_refresh_seconds() -> u64 {
    86400
}
fn default_discovery_refresh_seconds() -> u64 {
    86400
}
fn default_retry_interval_seconds() -> u64 {
    10
}
fn default_max_retry_interval_seconds() -> u64 {
    300
}
fn default_max_staleness_seconds() -> u64 {
    86400
}
fn default_unknown_kid_cooldown_seconds() -> u64 {
    30
}
fn default_connect_timeout_seconds() -> u64 {
    5
}
fn default_request_timeout_seconds() -> u64 {
    10
}
fn default_max_response_bytes() -> usize {
    256 * 1024
}
fn default_startup_wait_seconds() -> u64 {
    10
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            refresh_interval_seconds: default_refresh_interval_seconds(),
            min_refresh_seconds: default_min_refresh_seconds(),
            max_refresh_seconds: default_max_refresh_seconds(),
            discovery_refresh_seconds: default_discovery_refresh_seconds(),
            retry_interval_seconds: default_retry_interval_seconds(),
            max_retry_interval_seconds: default_max_retry_interval_seconds(),
            max_staleness_seconds: default_max_staleness_seconds(),
            unknown_kid_cooldown_seconds: default_unknown_kid_cooldown_seconds(),
            connect_timeout_seconds: default_connect_timeout_seconds(),
            request_timeout_seconds: default_request_timeout_seconds(),
            max_response_bytes: default_max_response_bytes(),
            startup_wait_seconds: default_startup_wait_seconds(),
        }
    }
}
