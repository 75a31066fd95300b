//! HTTP handlers: thin wrappers over the library, with fixed error bodies.

mod error;
mod health;
mod token_review;

pub use error::{error_response, method_not_allowed, not_found};
pub use health::{healthz, metrics, readyz};
pub use token_review::token_review;
