//! Signing a JWS, the other half of [`super::jws`]: for the crypto self-test at start-up and
//! for the tests, including ES512, which no JWT library we could use here signs. The gateway
//! itself never signs what it verifies; keeping the signer beside the verifier lets each be
//! tested against the other and both against jsonwebtoken.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::jws::Alg;

/// A private key for one algorithm.
pub struct SigningKey {
    alg: Alg,
    pair: Pair,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl SigningKey {
    /// A fresh key for `alg` (RSA keys are 2048 bits).
    pub fn generate(alg: Alg) -> Result<SigningKey, String> {
        let failed = |_| format!("generating a {alg} key failed");
        let pair = match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
            Alg::ES256 | Alg::ES384 | Alg::ES512 => Pair::Ec(EcdsaKeyPair::generate(ecdsa(alg)).map_err(failed)?),
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::generate().map_err(failed)?),
            Alg::HS256 | Alg::HS384 | Alg::HS512 => return Err(format!("{alg} is not a public-key algorithm")),
        };
        Ok(SigningKey { alg, pair })
    }

    /// A PKCS#8 private key (DER) for `alg`.
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<SigningKey, String> {
        let refused = |_| format!("the private key is not a {alg} key in PKCS#8");
        let pair = match alg {
            Alg::ES256 | Alg::ES384 | Alg::ES512 => {
                Pair::Ec(EcdsaKeyPair::from_pkcs8(ecdsa(alg), der).map_err(refused)?)
            }
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(refused)?),
            Alg::HS256 | Alg::HS384 | Alg::HS512 => return Err(format!("{alg} is not a public-key algorithm")),
            _ => Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(refused)?),
        };
        Ok(SigningKey { alg, pair })
    }

    /// The same RSA key, signing with another RSA algorithm (RS256 and PS256 may share a key).
    pub fn with_rsa_alg(alg: Alg, rsa: &SigningKey) -> Result<SigningKey, String> {
        match &rsa.pair {
            Pair::Rsa(pair) if alg.name().starts_with(['R', 'P']) => {
                let der = pair.as_der().map_err(|_| "exporting the RSA key failed".to_string())?;
                let pair = RsaKeyPair::from_pkcs8(der.as_ref()).map_err(|_| "re-reading the RSA key failed")?;
                Ok(SigningKey { alg, pair: Pair::Rsa(pair) })
            }
            _ => Err(format!("{alg} cannot sign with this key")),
        }
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public key as a JWK (no `kid`, no `alg`).
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.pair {
            Pair::Rsa(pair) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::Ec(pair) => {
                // An uncompressed point: 0x04, then x and y of equal length.
                let point = &pair.public_key().as_ref()[1..];
                let (x, y) = point.split_at(point.len() / 2);
                let crv = match self.alg {
                    Alg::ES256 => "P-256",
                    Alg::ES384 => "P-384",
                    _ => "P-521",
                };
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Pair::Ed(pair) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }

    /// A compact JWS of `payload` (any JSON text, sent as is) under `header`, whose `alg` is set
    /// to this key's.
    pub fn sign(&self, header: &Value, payload: &str) -> Result<String, String> {
        let mut header = header.clone();
        header["alg"] = json!(self.alg.name());
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload));
        let signature = self.signature(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The raw signature of `message`: PKCS#1 v1.5 or PSS for RSA, `r || s` for ECDSA.
    pub fn signature(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| format!("signing with {} failed", self.alg);
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn sig::RsaEncoding = match self.alg {
                    Alg::RS256 => &sig::RSA_PKCS1_SHA256,
                    Alg::RS384 => &sig::RSA_PKCS1_SHA384,
                    Alg::RS512 => &sig::RSA_PKCS1_SHA512,
                    Alg::PS256 => &sig::RSA_PSS_SHA256,
                    Alg::PS384 => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut out).map_err(failed)?;
                Ok(out)
            }
            Pair::Ec(pair) => Ok(pair.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

fn ecdsa(alg: Alg) -> &'static sig::EcdsaSigningAlgorithm {
    match alg {
        Alg::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        Alg::ES384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => &sig::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}
