//! Black-box tests: the real server on a random port, against the embedded HTTPS issuer.
mod cli;
mod compose;
mod faults;
mod health;
mod helpers;
mod introspection;
mod keys;
mod operations;
mod requests;
mod shipped;
mod token_review;
