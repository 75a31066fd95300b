//! A compact JWS, decoded once, and its signature checked with a key parsed once.
//!
//! The gateway verifies a JWS itself, with aws-lc-rs, rather than through jsonwebtoken's
//! `decode`, for three reasons that no crypto provider plugged into that library can remove:
//! the router must read header and payload before any key is chosen, and `decode` reads both
//! again (the payload twice); its crypto provider is handed a `DecodingKey` that holds RSA keys
//! as bytes, so every verification rebuilt the key; and its `Algorithm` has no ES512, one of the
//! nine algorithms kube-apiserver accepts. Here a token is decoded once ([`decode`]), a JWK is
//! parsed once per key-set fetch ([`VerifyingKey`]), and one function, [`Jws::signed_by`],
//! verifies every algorithm with the key parsed for exactly that algorithm.
//!
//! Decoding never decides anything in the token's favour. It checks the compact form, reads
//! `alg`, `kid`, `typ` and `iss`, refuses a member name repeated anywhere in the header, and
//! refuses header parameters that point at keys (`jku`, `jwk`, `x5u`, `x5c`), change how the token
//! is processed (`crit`, `b64`, nested JWTs) or belong to JWE and key agreement (`enc`, `zip`,
//! `epk`, ...): we never use them, and a token that carries them is not one our issuers mint.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::strict_json;
use crate::verdict::Reason;

/// Longest `kid` we keep or look up; longer ones are junk.
pub const MAX_KID_BYTES: usize = 256;

/// The JWS algorithms (RFC 7518, RFC 8037) a token may name. The HMAC ones are here only so
/// that a token naming one is refused by its issuer's allow-list, where the rejection counts
/// for that issuer: no key ever verifies them and no configuration may allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// HMAC with SHA-256: never verified.
    HS256,
    /// HMAC with SHA-384: never verified.
    HS384,
    /// HMAC with SHA-512: never verified.
    HS512,
}

impl Alg {
    /// Every algorithm a key can verify.
    pub const ASYMMETRIC: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The JOSE name, as in a token's header and a JWK's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    fn rsa(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            // RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash.
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    /// The curve's coordinate length and the verifier for `r || s` signatures (RFC 7518 3.4).
    fn ecdsa(self) -> Option<(usize, &'static sig::EcdsaVerificationAlgorithm)> {
        Some(match self {
            Alg::ES256 => (32, &sig::ECDSA_P256_SHA256_FIXED),
            Alg::ES384 => (48, &sig::ECDSA_P384_SHA384_FIXED),
            Alg::ES512 => (66, &sig::ECDSA_P521_SHA512_FIXED),
            _ => return None,
        })
    }
}

impl FromStr for Alg {
    type Err = ();

    /// Exact names only: `rs256` or `none` is no algorithm.
    fn from_str(s: &str) -> Result<Alg, ()> {
        Alg::ASYMMETRIC.into_iter().chain([Alg::HS256, Alg::HS384, Alg::HS512]).find(|a| a.name() == s).ok_or(())
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The public members of a JWK, decoded from base64url.
pub enum KeyMaterial {
    /// `kty: RSA`.
    Rsa {
        /// The modulus, big-endian.
        n: Vec<u8>,
        /// The public exponent, big-endian.
        e: Vec<u8>,
    },
    /// `kty: EC`.
    Ec {
        /// The affine x coordinate, exactly as long as the curve's field.
        x: Vec<u8>,
        /// The affine y coordinate, likewise.
        y: Vec<u8>,
    },
    /// `kty: OKP, crv: Ed25519`.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

/// One public key, parsed once for each algorithm it may verify. An algorithm it was not parsed
/// for never verifies, so a key admitted for ES256 cannot be used for ES384, nor an RSA key
/// admitted for RS256 only (its JWK named it) for PS256.
pub struct VerifyingKey {
    parsed: Vec<(Alg, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// Parses `material` for each of `algs` that fits it (the key type, and for EC the curve
    /// its coordinates' length names); `algs` that do not fit are skipped. Fails when the
    /// material is no valid key (a point off the curve, an Ed25519 key not of 32 bytes) or fits
    /// none of `algs`.
    pub fn parse(material: &KeyMaterial, algs: &[Alg]) -> Result<VerifyingKey, &'static str> {
        let mut parsed = Vec::new();
        for &alg in algs {
            let key = match (material, alg.rsa(), alg.ecdsa()) {
                (KeyMaterial::Rsa { n, e }, Some(params), _) => {
                    // The same integers without leading zero bytes, the encoding aws-lc requires;
                    // some providers publish `n` with one.
                    let components = RsaPublicKeyComponents { n: strip_zeros(n), e: strip_zeros(e) };
                    components.to_parsed_public_key(params).map_err(|_| "malformed RSA key")?
                }
                (KeyMaterial::Ec { x, y }, _, Some((len, verifier))) if x.len() == len && y.len() == len => {
                    let point = [&[0x04u8][..], x, y].concat();
                    ParsedPublicKey::new(verifier, point).map_err(|_| "the EC point is not on the curve")?
                }
                // Exactly 32 bytes: aws-lc would also read a DER key here, which RFC 8037 rules out.
                (KeyMaterial::Ed25519 { x }, _, _) if alg == Alg::EdDSA => match x.len() {
                    32 => ParsedPublicKey::new(&sig::ED25519, x).map_err(|_| "malformed Ed25519 key")?,
                    _ => return Err("malformed Ed25519 key"),
                },
                _ => continue,
            };
            parsed.push((alg, key));
        }
        if parsed.is_empty() {
            return Err("no allowed algorithm uses this key type");
        }
        Ok(VerifyingKey { parsed })
    }

    /// Whether this key was parsed for `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// Whether `signature` is `alg`'s signature of `message` under this key.
    pub fn verifies(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A compact JWS, decoded once: the routing fields, the payload, and what the signature covers.
pub struct Jws<'t> {
    /// Header `alg`; not yet checked against the issuer's list.
    pub alg: Alg,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Header `typ`.
    pub typ: Option<String>,
    payload: Payload,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'t str,
    /// `None` when the segment is not canonical base64url: refused at step 7, once routed.
    signature: Option<Vec<u8>>,
}

enum Payload {
    /// No member name repeated at any depth; a string `iss` in it.
    Claims(Map<String, Value>),
    /// A member name repeats somewhere below the top level, or at the top level other than
    /// `iss`: routable (so the rejection counts for the issuer), never verifiable.
    Repeated { iss: String },
}

impl fmt::Debug for Jws<'_> {
    /// Routing fields only: a `Jws` is the token, and a token is never logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws").field("alg", &self.alg).field("kid", &self.kid).field("iss", &self.iss()).finish()
    }
}

impl<'t> Jws<'t> {
    /// The unverified `iss`, for routing.
    pub fn iss(&self) -> &str {
        match &self.payload {
            Payload::Claims(claims) => claims.get("iss").and_then(Value::as_str).unwrap_or_default(),
            Payload::Repeated { iss } => iss,
        }
    }

    /// The payload, unverified; `malformed_token` when it names a member twice or the signature
    /// segment is not canonical base64url (README, "What is checked, in order", step 7: refused
    /// once the issuer is known, so it counts for it).
    pub(super) fn claims(&self) -> Result<&Map<String, Value>, Reason> {
        match (&self.payload, &self.signature) {
            (Payload::Claims(claims), Some(_)) => Ok(claims),
            _ => Err(Reason::MalformedToken),
        }
    }

    /// The payload, for a token whose signature and claims have been verified (only
    /// `jwt::verify` calls it, after both).
    pub(super) fn into_claims(self) -> Result<Map<String, Value>, Reason> {
        match self.payload {
            Payload::Claims(claims) => Ok(claims),
            Payload::Repeated { .. } => Err(Reason::MalformedToken),
        }
    }

    /// Whether `key` verifies the signature with the header's algorithm. The algorithm must be
    /// one the key was parsed for; the issuer's allow-list is the caller's (step 5).
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        self.signature.as_ref().is_some_and(|s| key.verifies(self.alg, self.signing_input.as_bytes(), s))
    }
}

/// The payload fields read when the strict parse fails. The derive refuses a duplicate `iss`.
#[derive(serde::Deserialize)]
struct RoutingClaims {
    iss: Option<Value>,
}

/// Header parameters a JWS from our issuers never carries: those that point at keys or
/// certificates (`jku`, `jwk`, `x5u`, `x5c`), change how the token is processed (`crit`, `b64`),
/// or belong to JWE and key agreement (RFC 7516: `enc`, `zip`; RFC 7518 4.6-4.8: `epk`, `apu`,
/// `apv`, `iv`, `tag`, `p2s`, `p2c`). A token mixing JOSE types is refused, not interpreted.
const REFUSED_HEADER_PARAMS: &[&str] =
    &["jku", "jwk", "x5u", "x5c", "crit", "b64", "enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c"];

/// The base64url alphabet (RFC 4648 section 5), by byte: one load per byte, where four range
/// checks per byte were a twentieth of a cache miss's instructions.
const B64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b == b'-' as usize || b == b'_' as usize;
        b += 1;
    }
    table
};

fn is_b64url(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| B64URL[b as usize])
}

/// Decodes a segment that must hold a JSON object. serde's derive would also take an array
/// positionally, so the object shape is checked first.
fn json_object_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'{').then_some(bytes)
}

/// Whether the token could be a JOSE object: its first dot-separated segment is base64url of a
/// JSON object. Such a token is only ever reviewed as a JWT, never introspected.
pub fn is_jose_shaped(token: &str) -> bool {
    token.split_once('.').is_some_and(|(first, _)| is_b64url(first) && json_object_segment(first).is_some())
}

/// Decodes a compact JWS once: header and payload base64url and JSON, the header's checks, the
/// routing fields, and the signature's bytes (canonical base64url only, else the token is
/// refused by [`Jws::claims`] once routed).
pub fn decode(token: &str) -> Result<Jws<'_>, Reason> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::MalformedToken);
    };
    // Header and payload are checked by their strict base64url decoding below (no padding, no
    // other characters); the signature's alphabet here, so that a token with characters no JWS
    // has is refused before routing, and one merely not canonical after (it counts for the issuer).
    if header.is_empty() || payload.is_empty() || !is_b64url(signature) {
        return Err(Reason::MalformedToken);
    }
    // Every member name once, at any depth: parsers disagree on which duplicate wins, and
    // kube-apiserver, an audit pipeline and we must read the same token.
    let header_bytes = json_object_segment(header).ok_or(Reason::MalformedToken)?;
    let mut h = strict_json::object(&header_bytes).ok_or(Reason::MalformedToken)?;
    if REFUSED_HEADER_PARAMS.iter().any(|p| h.contains_key(*p)) {
        return Err(Reason::HeaderNotAllowed);
    }
    if let Some(Value::String(cty)) = h.get("cty")
        && cty.eq_ignore_ascii_case("JWT")
    {
        return Err(Reason::HeaderNotAllowed);
    }
    // The other registered parameters we read or tolerate are strings (RFC 7515 4.1), as the
    // JWT library that used to parse this header required; a token that says otherwise is malformed.
    if ["cty", "x5t", "x5t#S256"].iter().any(|p| h.get(*p).is_some_and(|v| !v.is_string() && !v.is_null())) {
        return Err(Reason::MalformedToken);
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) => a.parse::<Alg>().map_err(|_| Reason::AlgorithmNotAllowed)?,
        _ => return Err(Reason::MalformedToken),
    };
    let kid = match h.remove("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= MAX_KID_BYTES => Some(k),
        Some(_) => return Err(Reason::MalformedToken),
    };
    let typ = match h.remove("typ") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(Reason::MalformedToken),
    };
    let signed_len = header.len() + 1 + payload.len();
    let payload_bytes = json_object_segment(payload).ok_or(Reason::MalformedToken)?;
    let body = match strict_json::object(&payload_bytes) {
        Some(claims) => match claims.get("iss") {
            Some(Value::String(_)) => Payload::Claims(claims),
            None | Some(Value::Null) => return Err(Reason::MissingIssuer),
            Some(_) => return Err(Reason::WrongIssuer),
        },
        None => {
            let routing: RoutingClaims = serde_json::from_slice(&payload_bytes).map_err(|_| Reason::MalformedToken)?;
            match routing.iss {
                Some(Value::String(iss)) => Payload::Repeated { iss },
                None | Some(Value::Null) => return Err(Reason::MissingIssuer),
                Some(_) => return Err(Reason::WrongIssuer),
            }
        }
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).ok();
    Ok(Jws { alg, kid, typ, payload: body, signing_input: &token[..signed_len], signature })
}

/// The payload as a whole, without any check: only for a token that has been verified (the
/// login plugin reads `nonce` and shows the claims) or to name a refused token's claim in an
/// error. `None` when it is not a JSON object.
pub fn payload_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&json_object_segment(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::sign::SigningKey;
    use serde_json::json;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    const ISS: &str = r#"{"iss":"https://idp.example.com"}"#;

    fn material(jwk: &Value) -> KeyMaterial {
        let member = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        match jwk["kty"].as_str().unwrap() {
            "RSA" => KeyMaterial::Rsa { n: member("n"), e: member("e") },
            "EC" => KeyMaterial::Ec { x: member("x"), y: member("y") },
            _ => KeyMaterial::Ed25519 { x: member("x") },
        }
    }

    fn split(token: &str) -> (&str, Vec<u8>) {
        let (input, signature) = token.rsplit_once('.').unwrap();
        (input, URL_SAFE_NO_PAD.decode(signature).unwrap())
    }

    /// Published vectors (RFC 7515 A.2-A.4, RFC 7520 4.1-4.3, RFC 8037 A.4, Wycheproof, a
    /// nimbus-jose-jwt ES384 token), each cross-checked by its collector against a second
    /// copy and Python's `cryptography` (tests/data/jws-kat.json names the sources).
    fn vectors() -> Vec<(String, Alg, Value, String)> {
        let doc: Value = serde_json::from_str(include_str!("../../tests/data/jws-kat.json")).unwrap();
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let alg = v["alg"].as_str().unwrap().parse().unwrap();
                (
                    v["name"].as_str().unwrap().to_string(),
                    alg,
                    v["jwk"].clone(),
                    v["token"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn every_algorithm_verifies_its_published_known_answer_vectors_and_nothing_else() {
        let vectors = vectors();
        let covered: std::collections::HashSet<Alg> = vectors.iter().map(|v| v.1).collect();
        assert_eq!(covered.len(), Alg::ASYMMETRIC.len(), "a vector for every algorithm we verify");
        for (name, alg, jwk, token) in &vectors {
            let key = VerifyingKey::parse(&material(jwk), &[*alg]).unwrap();
            let (input, signature) = split(token);
            assert!(key.verifies(*alg, input.as_bytes(), &signature), "{name}");
            for i in [0, signature.len() / 2, signature.len() - 1] {
                let mut flipped = signature.clone();
                flipped[i] ^= 0x01;
                assert!(!key.verifies(*alg, input.as_bytes(), &flipped), "{name}: bit flipped at {i}");
            }
            let altered = format!("{input}x");
            assert!(!key.verifies(*alg, altered.as_bytes(), &signature), "{name}: message altered");
            // The same key parsed for every other algorithm of its kind: none of them verifies
            // this signature, and an algorithm the key was not parsed for never does.
            let others: Vec<Alg> = Alg::ASYMMETRIC.into_iter().filter(|a| a != alg).collect();
            if let Ok(other) = VerifyingKey::parse(&material(jwk), &others) {
                for a in &others {
                    assert!(!other.verifies(*a, input.as_bytes(), &signature), "{name} as {a}");
                }
                assert!(!other.verifies(*alg, input.as_bytes(), &signature), "{name}: not parsed for {alg}");
            }
            // Every other vector's key of the same kind refuses it.
            let public = |j: &Value| (j["n"].clone(), j["x"].clone(), j["y"].clone());
            for (other_name, _, other_jwk, _) in &vectors {
                if public(other_jwk) != public(jwk)
                    && let Ok(wrong) = VerifyingKey::parse(&material(other_jwk), &[*alg])
                {
                    assert!(!wrong.verifies(*alg, input.as_bytes(), &signature), "{name} with {other_name}'s key");
                }
            }
        }
    }

    #[test]
    fn a_published_token_decodes_once_and_verifies_through_its_admitted_jwk() {
        for (name, alg, mut jwk, token) in vectors() {
            let Ok(jws) = decode(&token) else { continue }; // text and binary payloads: not JWTs
            assert_eq!(jws.alg, alg, "{name}");
            jwk["kid"] = json!("kat");
            let admitted = crate::authn::jwk::admit_key(&jwk, &Alg::ASYMMETRIC).unwrap();
            assert!(jws.signed_by(&admitted.key), "{name}");
            assert_eq!(jws.iss(), "joe", "{name}");
        }
    }

    /// jsonwebtoken 12 with its aws-lc provider, the verifier this module replaced, as the
    /// reference: what one signs the other verifies, and a token either refuses the other
    /// refuses, for each algorithm both know (it has no ES512), EdDSA included.
    #[test]
    fn signatures_agree_with_jsonwebtoken_in_both_directions() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        let pair = |scheme| rcgen::KeyPair::generate_for(scheme).unwrap();
        let (rsa, p256, p384) =
            (pair(&rcgen::PKCS_RSA_SHA256), pair(&rcgen::PKCS_ECDSA_P256_SHA256), pair(&rcgen::PKCS_ECDSA_P384_SHA384));
        // aws-lc's own PKCS#8 for Ed25519: jsonwebtoken reads it (not the one rcgen writes).
        let ed25519 =
            aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let claims = json!({"iss": "https://idp.example.com", "sub": "alice", "n": 1});
        for (theirs, der, pem) in [
            (Algorithm::RS256, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::RS384, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::RS512, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::PS256, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::PS384, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::PS512, rsa.serialize_der(), Some(rsa.serialize_pem())),
            (Algorithm::ES256, p256.serialize_der(), Some(p256.serialize_pem())),
            (Algorithm::ES384, p384.serialize_der(), Some(p384.serialize_pem())),
            (Algorithm::EdDSA, ed25519.as_ref().to_vec(), None),
        ] {
            let ours: Alg = format!("{theirs:?}").parse().unwrap();
            let encoding = match (ours, pem) {
                (Alg::ES256 | Alg::ES384, Some(pem)) => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                (_, Some(pem)) => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                (_, None) => EncodingKey::from_ed_der(&der),
            };
            let signer = SigningKey::from_pkcs8(ours, &der).unwrap();
            let jwk = signer.public_jwk();
            let verifying = VerifyingKey::parse(&material(&jwk), &[ours]).unwrap();
            let stock_key =
                DecodingKey::from_jwk(&serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone()).unwrap()).unwrap();
            let mut validation = Validation::new(theirs);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.validate_aud = false;
            let stock = |t: &str| jsonwebtoken::decode::<Map<String, Value>>(t, &stock_key, &validation).is_ok();
            let ours_ok = |t: &str| decode(t).is_ok_and(|jws| jws.signed_by(&verifying));

            let by_them = jsonwebtoken::encode(&Header::new(theirs), &claims, &encoding).unwrap();
            let by_us = signer.sign(&json!({}), &claims.to_string()).unwrap();
            for token in [&by_them, &by_us] {
                assert!(ours_ok(token) && stock(token), "{theirs:?}: {token}");
                let (input, mut signature) = split(token);
                signature[3] ^= 0x40;
                let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
                assert!(!ours_ok(&tampered) && !stock(&tampered), "{theirs:?}: tampered");
            }
        }
    }

    #[test]
    fn a_signature_of_another_algorithm_by_the_same_key_is_refused() {
        let rsa = SigningKey::generate(Alg::RS256).unwrap();
        let pss = SigningKey::with_rsa_alg(Alg::PS256, &rsa).unwrap();
        let rs384 = SigningKey::with_rsa_alg(Alg::RS384, &rsa).unwrap();
        let key = VerifyingKey::parse(&material(&rsa.public_jwk()), &[Alg::RS256, Alg::PS256]).unwrap();
        let message = b"header.payload";
        assert!(key.verifies(Alg::RS256, message, &rsa.signature(message).unwrap()));
        assert!(key.verifies(Alg::PS256, message, &pss.signature(message).unwrap()));
        assert!(!key.verifies(Alg::RS256, message, &pss.signature(message).unwrap()));
        assert!(!key.verifies(Alg::PS256, message, &rsa.signature(message).unwrap()));
        // RS384 is not among the algorithms it was parsed for.
        assert!(!key.verifies(Alg::RS384, message, &rs384.signature(message).unwrap()));
        // A token whose header names PS256 over an RS256 signature: refused.
        let lying = pss.sign(&json!({}), ISS).unwrap();
        let (input, _) = split(&lying);
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(rsa.signature(input.as_bytes()).unwrap()));
        assert!(!decode(&forged).unwrap().signed_by(&key));
    }

    #[test]
    fn a_p521_key_signs_and_verifies_only_es512() {
        let es512 = SigningKey::generate(Alg::ES512).unwrap();
        let token = es512.sign(&json!({"kid": "p521"}), ISS).unwrap();
        let jws = decode(&token).unwrap();
        assert_eq!(jws.alg, Alg::ES512);
        let key = VerifyingKey::parse(&material(&es512.public_jwk()), &Alg::ASYMMETRIC).unwrap();
        assert!(jws.signed_by(&key));
        assert!(Alg::ASYMMETRIC.iter().filter(|a| key.accepts(**a)).eq([Alg::ES512].iter()));
        // A P-256 key with the same-length coordinates of nothing: refused at parse.
        let p256 = SigningKey::generate(Alg::ES256).unwrap();
        assert!(VerifyingKey::parse(&material(&p256.public_jwk()), &[Alg::ES512]).is_err());
    }

    #[test]
    fn decode_reads_alg_kid_and_iss() {
        let text = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, ISS);
        let t = decode(&text).unwrap();
        assert_eq!(t.alg, Alg::RS256);
        assert_eq!(t.kid.as_deref(), Some("k1"));
        assert_eq!(t.typ.as_deref(), Some("JWT"));
        assert_eq!(t.iss(), "https://idp.example.com");
        assert_eq!(t.claims().unwrap().len(), 1);
    }

    #[test]
    fn anything_that_could_be_jose_is_never_treated_as_opaque() {
        assert!(is_jose_shaped(&token(r#"{"alg":"RS256"}"#, ISS)));
        assert!(is_jose_shaped(&format!("{}.not-even-a-payload", b64(r#"{"alg":"none"}"#))));
        assert!(is_jose_shaped(&format!("{}.a.b.c.d", b64(r#"{"enc":"A256GCM"}"#))));
        for opaque in ["glpat-0123456789abcdef", "ory_at_abc.def", "ya29.a0AfH6SMB", "v4.public.eyJ", "abc"] {
            assert!(!is_jose_shaped(opaque), "{opaque}");
        }
    }

    #[test]
    fn decode_refuses_what_is_not_a_compact_jws() {
        for t in [
            "".to_string(),
            "abc".to_string(),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            format!("{}.{}.sig=", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            format!("{} .{}.sig", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            token(r#"["RS256"]"#, ISS),
            token(r#"{"alg":"RS256"}"#, r#"["https://idp.example.com"]"#),
            token(r#"{"alg":"RS256","alg":"HS256"}"#, ISS),
            token(r#"{"alg":"RS256","kid":7}"#, ISS),
            token(r#"{"alg":"RS256","cty":7}"#, ISS),
            token(r#"{"alg":"RS256","x5t":["a"]}"#, ISS),
            token(r#"{"alg":"RS256","x5t#S256":{}}"#, ISS),
            token(r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#),
            token(r#"{"kid":"x"}"#, ISS),
            token(r#"{"alg":"RS256","kid":"x"}"#, "not json"),
        ] {
            assert_eq!(decode(&t).err(), Some(Reason::MalformedToken), "{t}");
        }
    }

    #[test]
    fn decode_refuses_none_and_unknown_algorithms_and_names_hmac_for_the_issuer_to_refuse() {
        for alg in ["none", "None", "NONE", "", "rs256", "ES256K", "RSA-OAEP", "ES521", "Ed25519"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), ISS);
            assert_eq!(decode(&t).err(), Some(Reason::AlgorithmNotAllowed), "{alg}");
        }
        // HS256 decodes; the issuer's allow-list (never HS*) refuses it, for that issuer.
        assert_eq!(decode(&token(r#"{"alg":"HS256"}"#, ISS)).unwrap().alg, Alg::HS256);
        assert_eq!(decode(&token(r#"{"alg":"ES512"}"#, ISS)).unwrap().alg, Alg::ES512);
        for alg in Alg::ASYMMETRIC {
            assert_eq!(alg.name().parse::<Alg>(), Ok(alg));
        }
    }

    #[test]
    fn no_key_is_parsed_for_hmac_nor_from_material_of_the_wrong_shape() {
        let ed = |x: Vec<u8>, algs: &[Alg]| VerifyingKey::parse(&KeyMaterial::Ed25519 { x }, algs).err();
        let raw = SigningKey::generate(Alg::EdDSA).unwrap().public_jwk();
        let raw = URL_SAFE_NO_PAD.decode(raw["x"].as_str().unwrap()).unwrap();
        assert!(VerifyingKey::parse(&KeyMaterial::Ed25519 { x: raw.clone() }, &[Alg::EdDSA]).is_ok());
        assert_eq!(ed(raw.clone(), &[Alg::HS256, Alg::RS256]), Some("no allowed algorithm uses this key type"));
        // The same key as SubjectPublicKeyInfo DER (44 bytes): aws-lc would read it; we do not.
        let spki = [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &raw].concat();
        assert_eq!(ed(spki, &[Alg::EdDSA]), Some("malformed Ed25519 key"));
        let p256 = SigningKey::generate(Alg::ES256).unwrap().public_jwk();
        let ec = material(&p256);
        assert!(VerifyingKey::parse(&ec, &[Alg::ES384, Alg::ES512]).is_err(), "P-256 coordinates fit no other curve");
        assert!(VerifyingKey::parse(&ec, &[Alg::ES384, Alg::ES256]).unwrap().accepts(Alg::ES256));
    }

    #[test]
    fn decode_refuses_key_pointing_and_processing_headers() {
        for extra in [
            r#""jku":"https://evil.example/jwks""#,
            r#""jwk":{"kty":"RSA"}"#,
            r#""x5u":"https://evil.example/cert""#,
            r#""x5c":["MIIB"]"#,
            r#""crit":["exp"]"#,
            r#""b64":false"#,
            r#""zip":"DEF""#,
            r#""enc":"A128GCM""#,
            r#""cty":"JWT""#,
            r#""epk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            r#""apu":"QWxpY2U""#,
            r#""apv":"Qm9i""#,
            r#""iv":"AAAAAAAAAAAAAAAA""#,
            r#""tag":"AAAAAAAAAAAAAAAAAAAAAA""#,
            r#""p2s":"c2FsdA""#,
            r#""p2c":4096"#,
            r#""jku":null"#,
        ] {
            let t = token(&format!(r#"{{"alg":"RS256",{extra}}}"#), ISS);
            assert_eq!(decode(&t).err(), Some(Reason::HeaderNotAllowed), "{extra}");
        }
    }

    #[test]
    fn a_payload_member_name_repeated_at_any_depth_routes_but_never_verifies() {
        for payload in [
            r#"{"iss":"https://idp.example.com","groups":["a"],"groups":["system:masters"]}"#,
            r#"{"iss":"https://idp.example.com","sub":"a","\u0073ub":"b"}"#,
            r#"{"iss":"https://idp.example.com","x":{"k":[{"role":"a","role":"b"}]}}"#,
        ] {
            let t = token(r#"{"alg":"RS256"}"#, payload);
            let jws = decode(&t).unwrap();
            assert_eq!(jws.iss(), "https://idp.example.com", "{payload}");
            assert_eq!(jws.claims().err(), Some(Reason::MalformedToken), "{payload}");
            assert_eq!(jws.into_claims().err(), Some(Reason::MalformedToken), "{payload}");
        }
        // Non-canonical base64url in the signature (trailing bits set): another spelling of the
        // same bytes; routed, then refused like a repeated member.
        let trailing_bits = format!("{}.{}.cx", b64(r#"{"alg":"RS256"}"#), b64(ISS));
        assert_eq!(decode(&trailing_bits).unwrap().claims().err(), Some(Reason::MalformedToken));
        let repeated_header = token(r#"{"alg":"RS256","typ":"JWT","typ":"at+jwt"}"#, ISS);
        assert_eq!(decode(&repeated_header).err(), Some(Reason::MalformedToken));
        let fine =
            token(r#"{"alg":"RS256","kid":null}"#, r#"{"iss":"https://idp.example.com","a":{"k":1},"b":{"k":2}}"#);
        assert!(decode(&fine).unwrap().claims().is_ok());
    }

    #[test]
    fn decode_requires_a_string_iss_and_string_typ() {
        assert_eq!(decode(&token(r#"{"alg":"RS256"}"#, "{}")).err(), Some(Reason::MissingIssuer));
        assert_eq!(decode(&token(r#"{"alg":"RS256"}"#, r#"{"iss":["a"]}"#)).err(), Some(Reason::WrongIssuer));
        let repeated_elsewhere = r#"{"iss":7,"a":1,"a":2}"#;
        assert_eq!(decode(&token(r#"{"alg":"RS256"}"#, repeated_elsewhere)).err(), Some(Reason::WrongIssuer));
        assert_eq!(decode(&token(r#"{"alg":"RS256","typ":1}"#, ISS)).err(), Some(Reason::MalformedToken));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_input_and_what_decodes_is_jose_shaped() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1du64);
        let alphabet: Vec<char> = "eyJ.-_AZaz09{}\":,[]\\ \u{0}é".chars().collect();
        let fragments = [r#"{"alg":"RS256"}"#, r#"{"iss":"x"}"#, r#"{"alg":null}"#, "[]", "{", "\u{feff}{}", "{\"a\":"];
        for _ in 0..20_000 {
            let mut token = String::new();
            for _ in 0..(next() % 80) {
                token.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let _ = decode(&token);
            let (h, p) = (fragments[(next() % 7) as usize], fragments[(next() % 7) as usize]);
            let shaped = format!("{}.{}.{}", b64(h), b64(p), &token.replace('.', ""));
            // The pipeline asks for the shape only of a token that does not decode.
            assert!(decode(&shaped).is_err() || is_jose_shaped(&shaped), "{shaped}");
        }
    }

    #[test]
    fn an_overlong_kid_is_malformed() {
        let t = token(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300)), ISS);
        assert_eq!(decode(&t).err(), Some(Reason::MalformedToken));
    }
}
