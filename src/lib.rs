//! tokenreview-gateway: a Kubernetes TokenReview webhook that verifies OIDC JWTs against
//! configured issuers and maps their claims to Kubernetes identities.
#![warn(missing_docs)]

pub mod audit;
pub mod authn;
pub mod cel;
pub mod certs;
pub mod cli;
pub mod config;
pub mod dev;
pub mod fingerprint;
pub mod login;
pub mod mapping;
pub mod metrics;
pub mod reload;
pub mod review;
pub mod routes;
pub mod selftest;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod verdict;
