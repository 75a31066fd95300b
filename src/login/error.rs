//! The login's error type.

/// Why a login did not produce a credential. Every message is one line that names what to fix,
/// and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Flags, environment or configuration that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The provider could not be reached or answered something unusable.
    #[error("{0}")]
    Provider(String),
    /// The provider or the person said no.
    #[error("{0}")]
    Refused(String),
    /// What the provider issued does not verify.
    #[error("{0}")]
    Verification(String),
    /// The token cache cannot be used.
    #[error("{0}")]
    Cache(String),
    /// A login needs the terminal, and kubectl said it is not ours.
    #[error("{0}")]
    NotInteractive(String),
    /// Nobody finished the login in time.
    #[error("{0}")]
    Timeout(String),
}
