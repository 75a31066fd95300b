//! `logging:`: log output.

use serde::Deserialize;

/// `logging:`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingSettings {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `tokenreview_gateway=debug`; `RUST_LOG` wins when set.
    #[serde(default)]
    pub level: Option<String>,
    /// File with a secret key for the token fingerprints in logs, so replicas and restarts agree;
    /// without it each process uses a random key.
    #[serde(default)]
    pub token_hash_key_file: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
