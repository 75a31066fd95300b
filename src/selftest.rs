//! The crypto self-test run before anything else: a binary whose signature verification does not
//! work must refuse to start with a clear error, not fail open or panic on the first token.
//!
//! jsonwebtoken picks its crypto provider at first use and panics there if Cargo feature
//! unification left it with none or two (`aws_lc_rs` and `rust_crypto`). So: install aws-lc
//! explicitly, then for each algorithm family we verify (RSA PKCS#1 and PSS, ECDSA P-256 and
//! P-384, Ed25519) sign one token with a fresh key and verify it through the gateway's own path
//! (JWK admission, candidate keys, per-issuer validation), and check that a token with one
//! signature bit flipped, and one whose payload was swapped, are both refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::authn::jwt;
use crate::authn::keys::admit_key;
use crate::verdict::Reason;

const ISSUER: &str = "https://selftest.invalid";

/// One algorithm per family the gateway verifies (RSA PKCS#1 v1.5 and PSS share one key).
pub const FAMILIES: [Algorithm; 5] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

/// Installs the aws-lc provider and runs the sign/verify/tamper check for every family.
/// Any failure, including a panic inside the crypto library, is an error naming the family.
pub fn run() -> Result<(), String> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    if CryptoProvider::try_get_default().is_none() {
        return Err("crypto self-test: jsonwebtoken has no crypto provider (misbuilt binary)".into());
    }
    let rsa = std::panic::catch_unwind(|| key_pair(Algorithm::RS256))
        .map_err(|_| "crypto self-test: RSA key generation panicked".to_string())??;
    for alg in FAMILIES {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match alg {
            Algorithm::RS256 | Algorithm::PS256 => check(alg, &rsa),
            _ => check(alg, &key_pair(alg)?),
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("crypto self-test failed for {alg:?}: {e}")),
            Err(_) => return Err(format!("crypto self-test failed for {alg:?}: the crypto library panicked")),
        }
    }
    Ok(())
}

/// A fresh key pair for `alg`.
fn key_pair(alg: Algorithm) -> Result<rcgen::KeyPair, String> {
    use Algorithm::*;
    let scheme = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => &rcgen::PKCS_RSA_SHA256,
        ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        EdDSA => &rcgen::PKCS_ED25519,
        other => return Err(format!("no self-test for {other:?}")),
    };
    rcgen::KeyPair::generate_for(scheme).map_err(|e| format!("key generation: {e}"))
}

/// Signs with `pair`, verifies through the gateway's path, and checks tampering is caught.
pub fn check(alg: Algorithm, pair: &rcgen::KeyPair) -> Result<(), String> {
    let pem = pair.serialize_pem();
    let encoding = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .map_err(|e| format!("private key: {e}"))?;
    let mut jwk = match alg {
        // jsonwebtoken cannot derive a JWK from an Ed25519 PKCS#8 v2 key; the raw public key is
        // all an OKP JWK holds.
        Algorithm::EdDSA => json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
        _ => serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).map_err(|e| format!("JWK: {e}"))?)
            .map_err(|e| format!("JWK: {e}"))?,
    };
    jwk["kid"] = json!("selftest");
    let key = admit_key(&jwk, &[alg]).map_err(|e| format!("the public key is not admitted: {e}"))?;
    let audiences = vec!["selftest".to_string()];
    let validation = jwt::validation_for(alg, &[ISSUER], &audiences, 0);
    let claims = json!({"iss": ISSUER, "aud": "selftest", "sub": "selftest", "exp": 4_102_444_800u64});
    let mut header = Header::new(alg);
    header.kid = Some("selftest".into());
    let token = jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| format!("signing: {e}"))?;

    exercise(&token, |t| jwt::verify(t, &[&key], &validation))
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
        let pair = key_pair(Algorithm::ES256).unwrap();
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"iss": ISSUER, "sub": "selftest"});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &encoding).unwrap();
        let fail_open = |_: &str| Ok(claims.as_object().unwrap().clone());
        let err = exercise(&token, fail_open).unwrap_err();
        assert!(err.contains("flipped signature bit"), "{err}");
        let fail_closed = |_: &str| Err(Reason::BadSignature);
        assert!(exercise(&token, fail_closed).unwrap_err().contains("did not verify"));
    }

    #[test]
    fn a_key_of_another_family_is_an_error() {
        let ec = key_pair(Algorithm::ES256).unwrap();
        assert!(check(Algorithm::RS256, &ec).is_err());
    }

    #[test]
    fn an_unsupported_algorithm_is_an_error_not_a_panic() {
        assert!(key_pair(Algorithm::HS256).is_err());
    }
}
