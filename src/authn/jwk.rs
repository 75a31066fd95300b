//! A JWKS document, key by key: which keys may verify tokens, each parsed once for the
//! algorithms it may verify, and why the others were dropped.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::jws::{Alg, KeyMaterial, MAX_KID_BYTES, VerifyingKey};

/// Most keys accepted in one JWKS document.
const MAX_KEYS_PER_SET: usize = 100;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// The curve or family a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256.
    EcP256,
    /// ES384.
    EcP384,
    /// ES512.
    EcP521,
    /// EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub fn verifies(self, alg: Alg) -> bool {
        use Alg::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::EcP521, ES512)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// A key that passed admission.
pub struct AdmittedKey {
    /// The key id, if the JWK had one.
    pub kid: Option<String>,
    /// What it verifies.
    pub kind: KeyKind,
    /// When the JWK names an algorithm, the key verifies only that one.
    pub alg: Option<Alg>,
    /// The public key, parsed for each algorithm the issuer allows and the JWK permits.
    pub key: VerifyingKey,
}

impl AdmittedKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.key.accepts(alg)
    }
}

/// One fetched key set.
pub struct KeySet {
    /// Admitted keys in document order.
    pub keys: Vec<AdmittedKey>,
}

/// Parses a JWKS document key by key, so one odd key cannot poison the set. Keys that share a
/// `kid` are ambiguous and all dropped. Returns the admitted keys and how many were dropped, or
/// `None` when the document itself is not a JWKS.
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Option<(Vec<AdmittedKey>, usize)> {
    parse_jwks_explained(body, allowed).map(|(keys, dropped)| (keys, dropped.len()))
}

/// A JWKS entry that did not pass admission, and why, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKey {
    /// Its `kid` (at most 64 characters of it), if it had one.
    pub kid: Option<String>,
    /// Why it cannot verify tokens.
    pub why: String,
}

/// [`parse_jwks`], with the reason each dropped entry was dropped.
pub fn parse_jwks_explained(body: &[u8], allowed: &[Alg]) -> Option<(Vec<AdmittedKey>, Vec<DroppedKey>)> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    // serde's derive would also read `[[...]]` positionally as `{"keys": [...]}` (found by
    // fuzzing): a JWKS is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let doc: Jwks = serde_json::from_slice(body).ok()?;
    if doc.keys.len() > MAX_KEYS_PER_SET {
        return None;
    }
    let mut dropped = Vec::new();
    let mut keys: Vec<AdmittedKey> = doc
        .keys
        .iter()
        .filter_map(|k| match admit_key(k, allowed) {
            Ok(key) => Some(key),
            Err(why) => {
                let kid = k.get("kid").and_then(Value::as_str).map(|kid| kid.chars().take(64).collect::<String>());
                tracing::debug!(kid = %kid.as_deref().unwrap_or("").escape_debug(), why, "JWKS entry ignored");
                dropped.push(DroppedKey { kid, why: explain(k, why) });
                None
            }
        })
        .collect();
    let mut kid_counts: HashMap<&str, usize> = HashMap::new();
    for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
        *kid_counts.entry(kid).or_default() += 1;
    }
    let ambiguous: Vec<String> = kid_counts.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_string()).collect();
    if !ambiguous.is_empty() {
        tracing::warn!(kids = ?ambiguous, "the JWKS publishes several keys under one kid; those keys are ignored");
        keys.retain(|k| {
            let shared = k.kid.as_ref().is_some_and(|kid| ambiguous.contains(kid));
            if shared {
                let why = "another key in the set has the same kid, so neither can be told apart".to_string();
                dropped.push(DroppedKey { kid: k.kid.clone(), why });
            }
            !shared
        });
    }
    Some((keys, dropped))
}

/// [`admit_key`]'s reason, with the configuration change that would admit the key when there
/// is one.
fn explain(jwk: &Value, why: &'static str) -> String {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or("");
    match why {
        "alg is not allowed for this issuer" => {
            format!("{} is not allowed for this issuer: add it to `algorithms`", member("alg"))
        }
        "no allowed algorithm uses this key type" => {
            let algs = match (member("kty"), member("crv")) {
                ("RSA", _) => "RS256/RS384/RS512/PS256/PS384/PS512",
                ("EC", "P-256") => "ES256",
                ("EC", "P-384") => "ES384",
                ("EC", "P-521") => "ES512",
                ("OKP", _) => "EdDSA",
                _ => "its algorithm",
            };
            format!("{algs} is not allowed for this issuer: add it to `algorithms`")
        }
        other => other.to_string(),
    }
}

/// Decides whether one JWK may verify tokens. Refuses anything that is not a public signing key
/// of a kind and size we trust.
pub fn admit_key(jwk: &Value, allowed: &[Alg]) -> Result<AdmittedKey, &'static str> {
    let obj = jwk.as_object().ok_or("not an object")?;
    let str_field = |name: &str| -> Result<Option<&str>, &'static str> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("a member has the wrong type"),
        }
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
        tracing::warn!("the JWKS publishes private or symmetric key material; that key is ignored");
        return Err("private or symmetric key material");
    }
    if str_field("use")?.is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not a list")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("key_ops does not include verify");
        }
    }
    let kid = str_field("kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err("kid too long");
    }
    let alg = match str_field("alg")? {
        None => None,
        Some(a) => {
            let alg: Alg = a.parse().map_err(|_| "alg is not a supported signature algorithm")?;
            if !allowed.contains(&alg) {
                return Err("alg is not allowed for this issuer");
            }
            Some(alg)
        }
    };
    let kind = match (str_field("kty")?, str_field("crv")?) {
        (Some("RSA"), _) => KeyKind::Rsa,
        (Some("EC"), Some("P-256")) => KeyKind::EcP256,
        (Some("EC"), Some("P-384")) => KeyKind::EcP384,
        (Some("EC"), Some("P-521")) => KeyKind::EcP521,
        (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
        (Some("EC" | "OKP"), _) => return Err("unsupported curve"),
        _ => return Err("unsupported key type"),
    };
    if let Some(a) = alg
        && !kind.verifies(a)
    {
        return Err("alg does not match the key type");
    }
    // The algorithms this key will verify: the issuer's, of the key's kind, and only the JWK's
    // own `alg` when it names one. The key is parsed once for each of them, here.
    let algs: Vec<Alg> =
        allowed.iter().copied().filter(|a| kind.verifies(*a) && alg.is_none_or(|named| named == *a)).collect();
    if algs.is_empty() {
        return Err("no allowed algorithm uses this key type");
    }
    let material = match kind {
        KeyKind::Rsa => {
            let n = decode_b64(str_field("n")?)?;
            let e = decode_b64(str_field("e")?)?;
            let bits = bit_length(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err("RSA modulus size outside 2048..=8192 bits");
            }
            let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
            if !e_is_odd || bit_length(&e) < 2 {
                return Err("RSA exponent must be odd and at least 3");
            }
            // aws-lc verifies with exponents of at most 33 bits; a larger one could never verify.
            if bit_length(&e) > 33 {
                return Err("RSA exponent larger than 2^33");
            }
            KeyMaterial::Rsa { n, e }
        }
        KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::EcP521 => {
            let (x, y) = (decode_b64(str_field("x")?)?, decode_b64(str_field("y")?)?);
            // RFC 7518 6.2.1.2: each coordinate as long as the curve's field, leading zeros kept.
            let len = match kind {
                KeyKind::EcP256 => 32,
                KeyKind::EcP384 => 48,
                _ => 66,
            };
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length for the curve");
            }
            KeyMaterial::Ec { x, y }
        }
        KeyKind::Ed25519 => {
            // RFC 8037 2: the raw 32-byte key (aws-lc would also read other lengths as DER).
            let x = decode_b64(str_field("x")?)?;
            if x.len() != 32 {
                return Err("malformed Ed25519 key");
            }
            KeyMaterial::Ed25519 { x }
        }
    };
    let key = VerifyingKey::parse(&material, &algs)?;
    Ok(AdmittedKey { kid: kid.map(str::to_string), kind, alg, key })
}

fn decode_b64(s: Option<&str>) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD.decode(s.ok_or("missing key member")?).map_err(|_| "key member is not base64url")
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: [Alg; 4] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384];

    fn rsa_jwk(bits: usize) -> Value {
        let n = URL_SAFE_NO_PAD.encode(vec![0xc1u8; bits / 8]);
        json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"})
    }

    fn ec_jwk() -> Value {
        // A real P-256 point is required: the generator point of P-256.
        json!({"kty": "EC", "crv": "P-256", "kid": "e",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"})
    }

    #[test]
    fn rsa_2048_is_admitted_and_binds_no_alg_without_one() {
        let k = admit_key(&rsa_jwk(2048), &ALL).unwrap();
        assert_eq!(k.kind, KeyKind::Rsa);
        assert!(k.accepts(Alg::RS256) && k.accepts(Alg::PS256));
        assert!(!k.accepts(Alg::ES256));
    }

    #[test]
    fn rsa_under_2048_bits_is_refused() {
        assert_eq!(admit_key(&rsa_jwk(1024), &ALL).err(), Some("RSA modulus size outside 2048..=8192 bits"));
    }

    #[test]
    fn a_jwk_alg_binds_the_key_to_that_alg() {
        let mut j = rsa_jwk(2048);
        j["alg"] = json!("RS256");
        let k = admit_key(&j, &ALL).unwrap();
        assert!(k.accepts(Alg::RS256));
        assert!(!k.accepts(Alg::PS256));
    }

    #[test]
    fn wrong_purpose_and_secret_keys_are_refused() {
        let cases = [
            (json!({"kty": "oct", "k": "c2VjcmV0"}), "private or symmetric key material"),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["use"] = json!("enc");
                    j
                },
                "use is not sig",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["key_ops"] = json!(["encrypt"]);
                    j
                },
                "key_ops does not include verify",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RSA-OAEP");
                    j
                },
                "alg is not a supported signature algorithm",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RS512");
                    j
                },
                "alg is not allowed for this issuer",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("ES256");
                    j
                },
                "alg does not match the key type",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["d"] = json!("AQAB");
                    j
                },
                "private or symmetric key material",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["kid"] = json!("k".repeat(300));
                    j
                },
                "kid too long",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["e"] = json!("AQ");
                    j
                },
                "RSA exponent must be odd and at least 3",
            ),
            (json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}), "no allowed algorithm uses this key type"),
            (
                {
                    let mut j = ec_jwk();
                    j["x"] = json!("AAEC");
                    j
                },
                "EC coordinates have the wrong length for the curve",
            ),
            (
                {
                    let mut j = ec_jwk();
                    j["y"] = json!("axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY");
                    j
                },
                "the EC point is not on the curve",
            ),
            (json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}), "unsupported curve"),
            (json!({"kty": "XYZ"}), "unsupported key type"),
            (json!("a string"), "not an object"),
        ];
        for (jwk, want) in cases {
            assert_eq!(admit_key(&jwk, &ALL).err(), Some(want), "{jwk}");
        }
        let short = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAEC"});
        assert_eq!(admit_key(&short, &[Alg::EdDSA]).err(), Some("malformed Ed25519 key"));
        // The same key wrapped in SubjectPublicKeyInfo DER: aws-lc would take it, RFC 8037 does not.
        let raw = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let spki = [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &raw].concat();
        let wrapped = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(spki)});
        assert_eq!(admit_key(&wrapped, &[Alg::EdDSA]).err(), Some("malformed Ed25519 key"));
        let mut huge_e = rsa_jwk(2048);
        huge_e["e"] = json!(URL_SAFE_NO_PAD.encode([2u8, 0, 0, 0, 1]));
        assert_eq!(admit_key(&huge_e, &ALL).err(), Some("RSA exponent larger than 2^33"));
    }

    #[test]
    fn one_odd_key_does_not_poison_the_set() {
        let doc = json!({"keys": [{"kty": "weird"}, rsa_jwk(2048), ec_jwk(), {"kty": "oct", "k": "AA"}]});
        let (keys, dropped) = parse_jwks(doc.to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(keys.iter().map(|k| k.kind).collect::<Vec<_>>(), vec![KeyKind::Rsa, KeyKind::EcP256]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn dropped_keys_say_what_would_admit_them() {
        let mut eddsa =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let doc = json!({"keys": [eddsa.clone(), {"kty": "oct", "kid": "hmac", "k": "AA"}, ec_jwk()]});
        let (keys, dropped) = parse_jwks_explained(doc.to_string().as_bytes(), &[Alg::RS256]).unwrap();
        assert!(keys.is_empty());
        assert_eq!(
            dropped,
            vec![
                DroppedKey {
                    kid: Some("ed".into()),
                    why: "EdDSA is not allowed for this issuer: add it to `algorithms`".into()
                },
                DroppedKey { kid: Some("hmac".into()), why: "private or symmetric key material".into() },
                DroppedKey {
                    kid: Some("e".into()),
                    why: "ES256 is not allowed for this issuer: add it to `algorithms`".into()
                },
            ]
        );
        eddsa["alg"] = json!("EdDSA");
        let (_, dropped) = parse_jwks_explained(json!({"keys": [eddsa]}).to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(dropped[0].why, "EdDSA is not allowed for this issuer: add it to `algorithms`");
    }

    #[test]
    fn keys_sharing_a_kid_are_ambiguous_and_dropped() {
        let mut other = rsa_jwk(2048);
        other["n"] = json!(URL_SAFE_NO_PAD.encode(vec![0xd3u8; 256]));
        let doc = json!({"keys": [rsa_jwk(2048), other, ec_jwk()]});
        let (keys, dropped) = parse_jwks(doc.to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(), vec![Some("e")]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_refused_whole() {
        assert!(parse_jwks(b"<html>", &ALL).is_none());
        assert!(parse_jwks(b"{\"keys\": {}}", &ALL).is_none());
        // A derived struct would take an array positionally; a JWKS is an object (found by fuzzing).
        assert!(parse_jwks(format!(" \n{}", json!([[ec_jwk()]])).as_bytes(), &ALL).is_none());
        assert_eq!(parse_jwks(json!({"keys": [ec_jwk()]}).to_string().as_bytes(), &ALL).unwrap().0.len(), 1);
        let many = json!({"keys": vec![rsa_jwk(2048); 101]});
        assert!(parse_jwks(many.to_string().as_bytes(), &ALL).is_none());
    }

    #[test]
    fn keys_for_algorithms_the_issuer_does_not_allow_are_ignored() {
        assert_eq!(admit_key(&ec_jwk(), &[Alg::RS256]).err(), Some("no allowed algorithm uses this key type"));
    }

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}
