//! tokenreview-gateway: a Kubernetes TokenReview webhook that verifies OIDC JWTs against
//! configured issuers and maps their claims to Kubernetes identities.
#![warn(missing_docs)]

pub mod authn;
pub mod config;
pub mod mapping;
pub mod review;
