//! The configuration layer's one error type.

/// Everything wrong with a configuration, one line per problem, each naming its field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a field has the wrong type or is unknown.
    #[error("cannot load configuration {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The file parsed but some values are invalid.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}
