//! The unverified decoding and router: `jwt::decode`, key candidates, then verification with a
//! real key. Nothing here may panic, and nothing may verify: the fuzzer has no private key.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tokenreview_gateway::authn::jws::Alg;
use tokenreview_gateway::authn::jwt::{self, Candidates};
use tokenreview_gateway::authn::keys::{KeySet, parse_jwks};

const ALGS: [Alg; 4] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384];

// Public keys only (RFC 7515 appendix A.2 RSA key, and the P-256 generator point).
static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let jwks = include_bytes!("../seeds/fixture_jwks.json");
    let (keys, _) = parse_jwks(jwks, &ALGS).expect("fixture JWKS parses");
    assert!(!keys.is_empty());
    KeySet { keys }
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let Ok(decoded) = jwt::decode(token) else { return };
    assert!(decoded.kid.as_ref().is_none_or(|k| k.len() <= 256));
    if let Candidates::Keys(keys) = jwt::candidates(&KEYS, decoded.alg, decoded.kid.as_deref()) {
        assert!(keys.iter().all(|k| k.accepts(decoded.alg)));
        let policy = jwt::ClaimPolicy::new(&["https://idp.example.com"], &["kubernetes".to_string()], 60);
        assert!(jwt::verify(decoded, &keys, &policy).is_err(), "a fuzzed token verified");
    }
});
