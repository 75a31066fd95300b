//! The unverified pre-parser and router: `jwt::peek`, key candidates, then verification with a
//! real key. Nothing here may panic, and nothing may verify: the fuzzer has no private key.
#![no_main]

use std::sync::LazyLock;

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use tokenreview_gateway::authn::jwt::{self, Candidates};
use tokenreview_gateway::authn::keys::{KeySet, parse_jwks};

const ALGS: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

// Public keys only (RFC 7515 appendix A.2 RSA key, and the P-256 generator point).
static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let jwks = include_bytes!("../seeds/fixture_jwks.json");
    let (keys, _) = parse_jwks(jwks, &ALGS).expect("fixture JWKS parses");
    assert!(!keys.is_empty());
    KeySet { keys }
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let Ok(peeked) = jwt::peek(token) else { return };
    assert!(peeked.kid.as_ref().is_none_or(|k| k.len() <= 256));
    if let Candidates::Keys(keys) = jwt::candidates(&KEYS, peeked.alg, peeked.kid.as_deref()) {
        assert!(keys.iter().all(|k| k.accepts(peeked.alg)));
        let audiences = vec!["kubernetes".to_string()];
        let validation = jwt::validation_for(peeked.alg, &["https://idp.example.com"], &audiences, 60);
        assert!(jwt::verify(token, &keys, &validation).is_err(), "a fuzzed token verified");
    }
});
