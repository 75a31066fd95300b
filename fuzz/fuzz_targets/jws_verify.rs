//! The verification entry point, `jws::decode` then each candidate key's `signed_by`, seeded
//! with published, genuinely signed tokens (tests/data/jws-kat.json) whose public keys it holds.
//! Nothing may panic; a signature may verify only over a signing input that was published
//! signed (the fuzzer has no private key; ECDSA's malleable `s` keeps the input); and for every
//! algorithm jsonwebtoken also knows, its stock aws-lc verifier must agree, token by token.
#![no_main]

use std::collections::HashSet;
use std::sync::LazyLock;

use jsonwebtoken::{Algorithm, DecodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenreview_gateway::authn::jws::{self, Alg};
use tokenreview_gateway::authn::jwt::{self, Candidates, ClaimPolicy};
use tokenreview_gateway::authn::keys::{KeySet, admit_key};

struct Fixture {
    set: KeySet,
    /// The same keys for jsonwebtoken, by position in `set`.
    stock: Vec<DecodingKey>,
    signed: HashSet<String>,
    policy: ClaimPolicy,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let doc: Value = serde_json::from_str(include_str!("../../tests/data/jws-kat.json")).unwrap();
    let (mut keys, mut stock, mut signed, mut kids) = (Vec::new(), Vec::new(), HashSet::new(), HashSet::new());
    for v in doc["vectors"].as_array().unwrap() {
        let token = v["token"].as_str().unwrap();
        signed.insert(token.rsplit_once('.').unwrap().0.to_string());
        let jwk = &v["jwk"];
        if let Some(kid) = jwk.get("kid").and_then(Value::as_str)
            && !kids.insert(kid.to_string())
        {
            continue; // the same key under the same kid, published twice
        }
        keys.push(admit_key(jwk, &Alg::ASYMMETRIC).expect("a published key is admitted"));
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        stock.push(DecodingKey::from_jwk(&parsed).unwrap_or_else(|_| DecodingKey::from_secret(b"-").unwrap()));
    }
    let policy = ClaimPolicy::new(&["joe"], &["kubernetes".to_string()], 60);
    Fixture { set: KeySet { keys }, stock, signed, policy }
});

fn stock_alg(alg: Alg) -> Option<Algorithm> {
    alg.name().parse().ok().filter(|a: &Algorithm| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Ok(token) = std::str::from_utf8(data) else { return };
    let Ok(decoded) = jws::decode(token) else { return };
    let Candidates::Keys(keys) = jwt::candidates(&f.set, decoded.alg, decoded.kid.as_deref()) else { return };
    let (input, signature) = token.rsplit_once('.').unwrap();
    for key in &keys {
        let ours = decoded.signed_by(&key.key);
        if ours {
            assert!(f.signed.contains(input), "verified a signing input nobody signed: {token}");
        }
        let at = f.set.keys.iter().position(|k| std::ptr::eq(k, *key)).unwrap();
        if let Some(alg) = stock_alg(decoded.alg) {
            let theirs = jsonwebtoken::crypto::verify(signature, input.as_bytes(), &f.stock[at], alg).unwrap_or(false);
            assert_eq!(ours, theirs, "jsonwebtoken disagrees on {token}");
        }
    }
    // The published tokens are long expired or carry no audience: none may pass the claims.
    assert!(jwt::verify(decoded, &keys, &f.policy).is_err(), "a fuzzed token verified: {token}");
});
