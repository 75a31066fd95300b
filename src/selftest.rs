//! The crypto self-test run before anything else: a binary whose signature verification does not
//! work must refuse to start with a clear error, not fail open or panic on the first token.
//!
//! For each algorithm family we verify (RSA PKCS#1 v1.5 and PSS, ECDSA P-256, P-384 and P-521,
//! Ed25519), sign one token with a fresh key and verify it through the gateway's own path (JWK
//! admission, which parses the key once, decoding, candidate keys, signature, claim policy), and
//! check that a token with one signature bit flipped, and one whose payload was swapped, are
//! both refused. jsonwebtoken, which only the embedded `dev` issuer still signs with, gets its
//! aws-lc provider installed here: it would otherwise pick one at first use, and panic there if
//! Cargo feature unification left it with none or two.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::authn::jwt::{self, Alg, ClaimPolicy};
use crate::authn::keys::{KeySet, admit_key};
use crate::authn::sign::SigningKey;
use crate::verdict::Reason;

const ISSUER: &str = "https://selftest.invalid";

/// One algorithm per family the gateway verifies (RSA PKCS#1 v1.5 and PSS share one key).
pub const FAMILIES: [Alg; 6] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::ES512, Alg::EdDSA];

/// Runs the sign/verify/tamper check for every family. Any failure, including a panic inside
/// the crypto library, is an error naming the family.
pub fn run() -> Result<(), String> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        return Err("crypto self-test: jsonwebtoken has no crypto provider (misbuilt binary)".into());
    }
    let rsa = std::panic::catch_unwind(|| SigningKey::generate(Alg::RS256))
        .map_err(|_| "crypto self-test: RSA key generation panicked".to_string())??;
    for alg in FAMILIES {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match alg {
            Alg::RS256 => check(&rsa),
            Alg::PS256 => check(&SigningKey::with_rsa_alg(alg, &rsa)?),
            _ => check(&SigningKey::generate(alg)?),
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("crypto self-test failed for {alg}: {e}")),
            Err(_) => return Err(format!("crypto self-test failed for {alg}: the crypto library panicked")),
        }
    }
    Ok(())
}

/// Signs with `key`, verifies through the gateway's path (JWK admission with the key parsed
/// once, decoding, candidate keys, signature and claim policy), and checks tampering is caught.
pub fn check(key: &SigningKey) -> Result<(), String> {
    let alg = key.alg();
    let mut jwk = key.public_jwk();
    jwk["kid"] = json!("selftest");
    let admitted = admit_key(&jwk, &[alg]).map_err(|e| format!("the public key is not admitted: {e}"))?;
    let set = KeySet { keys: vec![admitted] };
    let policy = ClaimPolicy::new(&[ISSUER], &["selftest".to_string()], 0);
    let claims = json!({"iss": ISSUER, "aud": "selftest", "sub": "selftest", "exp": 4_102_444_800u64});
    let token = key.sign(&json!({"kid": "selftest"}), &claims.to_string())?;
    exercise(&token, |t| {
        let jws = jwt::decode(t)?;
        match jwt::candidates(&set, jws.alg, jws.kid.as_deref()) {
            jwt::Candidates::Keys(keys) => jwt::verify(jws, &keys, &policy),
            _ => Err(Reason::NoMatchingKey),
        }
    })
}

/// The genuine token must verify with its claims; a flipped signature bit and a swapped payload
/// must both be refused as bad signatures.
fn exercise(
    token: &str,
    verify: impl Fn(&str) -> Result<serde_json::Map<String, serde_json::Value>, Reason>,
) -> Result<(), String> {
    match verify(token) {
        Ok(c) if c.get("sub") == Some(&json!("selftest")) => {}
        Ok(_) => return Err("a genuine token verified with the wrong claims".into()),
        Err(r) => return Err(format!("a genuine token did not verify ({})", r.as_str())),
    }
    let (message, signature) = token.rsplit_once('.').ok_or("signing produced no signature")?;
    let mut sig = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "signing produced bad base64")?;
    let last = sig.last_mut().ok_or("signing produced an empty signature")?;
    *last ^= 1;
    let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&sig));
    if verify(&flipped) != Err(Reason::BadSignature) {
        return Err("a token with a flipped signature bit was not refused".into());
    }
    let (header_b64, _) = message.split_once('.').ok_or("signing produced no payload")?;
    let other = URL_SAFE_NO_PAD
        .encode(json!({"iss": ISSUER, "aud": "selftest", "sub": "mallory", "exp": 4_102_444_800u64}).to_string());
    if verify(&format!("{header_b64}.{other}.{signature}")) != Err(Reason::BadSignature) {
        return Err("a token with a swapped payload was not refused".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_passes_on_this_build() {
        assert_eq!(run(), Ok(()));
    }

    #[test]
    fn a_verifier_that_accepts_everything_fails_the_test() {
        let key = SigningKey::generate(Alg::ES256).unwrap();
        let claims = json!({"iss": ISSUER, "sub": "selftest"});
        let token = key.sign(&json!({}), &claims.to_string()).unwrap();
        let fail_open = |_: &str| Ok(claims.as_object().unwrap().clone());
        let err = exercise(&token, fail_open).unwrap_err();
        assert!(err.contains("flipped signature bit"), "{err}");
        let fail_closed = |_: &str| Err(Reason::BadSignature);
        assert!(exercise(&token, fail_closed).unwrap_err().contains("did not verify"));
    }

    #[test]
    fn a_key_of_another_family_is_an_error_not_a_panic() {
        let ec = SigningKey::generate(Alg::ES256).unwrap();
        assert!(SigningKey::with_rsa_alg(Alg::PS256, &ec).is_err());
        assert!(SigningKey::generate(Alg::HS256).is_err());
    }
}
