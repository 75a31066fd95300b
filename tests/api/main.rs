//! Black-box tests: the real server on a random port, against the embedded HTTPS issuer.
mod attack_kit;
mod attacks_a;
mod attacks_b;
mod attacks_c;
mod attacks_k;
mod attacks_l;
mod attacks_own;
mod attacks_w;
mod cli;
mod faults;
mod health;
mod helpers;
mod keys;
mod operations;
mod requests;
mod shipped;
mod token_review;
