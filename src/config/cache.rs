//! `cache:`: the review result cache.

use serde::Deserialize;

/// `cache:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSettings {
    /// Most review results kept (bounds memory whatever the traffic); an answer longer than 640
    /// bytes (a user with many groups) counts as one entry per 640 bytes. 0 disables the cache.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Longest a positive answer is reused; never beyond the token's `exp`.
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u64,
    /// How long a definite rejection is reused. Transient failures are never cached.
    #[serde(default = "default_negative_ttl_seconds")]
    pub negative_ttl_seconds: u64,
}

fn default_max_entries() -> u64 {
    100_000
}
fn default_ttl_seconds() -> u64 {
    300
}
fn default_negative_ttl_seconds() -> u64 {
    10
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_entries: default_max_entries(),
            ttl_seconds: default_ttl_seconds(),
            negative_ttl_seconds: default_negative_ttl_seconds(),
        }
    }
}
