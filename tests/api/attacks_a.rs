//! Attack matrix, section A (algorithm and signature games), against the real server.
//! Rows A01, A04 and A07 are also covered by `token_review.rs` (`alg_none_is_rejected`,
//! `hs256_signed_with_the_issuers_public_key_is_rejected`,
//! `an_algorithm_outside_the_issuers_list_is_rejected_even_with_a_valid_signature`); see
//! docs/security-tests.md.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::attack_kit::*;
use crate::helpers::*;

/// A01: every spelling of `none`, with an empty or a junk signature: refused before any key
/// lookup, so no request reaches the issuer.
#[tokio::test]
async fn alg_none_in_any_case_or_empty_is_rejected() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let payload = b64(app.payload("alice"));
    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = b64(format!(r#"{{"alg":"{alg}","kid":"rs256-1"}}"#));
        tokens.push(format!("{header}.{payload}."));
        tokens.push(format!("{header}.{payload}.AAAA"));
    }
    // An empty third segment is not even a compact JWS; the junk-signature ones are refused by alg.
    let (empty_sig, junk_sig): (Vec<String>, Vec<String>) = tokens.into_iter().partition(|t| t.ends_with('.'));
    app.all_refused_because(false, "malformed_token", &empty_sig).await;
    app.all_refused_because(false, "algorithm_not_allowed", &junk_sig).await;
    assert_eq!(app.issuer.requests(), before);
}

/// A02: `alg` missing, a number, null, a list, an object; the rest of the token genuine.
#[tokio::test]
async fn missing_or_non_string_alg_is_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    let tokens: Vec<String> = [
        r#"{"kid":"forge-rs"}"#,
        r#"{"alg":1,"kid":"forge-rs"}"#,
        r#"{"alg":null,"kid":"forge-rs"}"#,
        r#"{"alg":["RS256"],"kid":"forge-rs"}"#,
        r#"{"alg":{"name":"RS256"},"kid":"forge-rs"}"#,
    ]
    .iter()
    .map(|h| rs.sign_bytes_as(Algorithm::RS256, h.as_bytes(), payload.as_bytes()))
    .collect();
    app.all_refused_because(false, "malformed_token", &tokens).await;
}

/// A03: lower- or mixed-case names of real algorithms, genuinely signed with that algorithm.
#[tokio::test]
async fn alg_case_variants_are_rejected() {
    let (app, rs, es) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    let mut tokens = Vec::new();
    for (f, alg, names) in [(&rs, Algorithm::RS256, ["rs256", "Rs256"]), (&es, Algorithm::ES256, ["es256", "eS256"])] {
        for name in names {
            let header = json!({"alg": name, "kid": f.kid}).to_string();
            tokens.push(f.sign_bytes_as(alg, header.as_bytes(), payload.as_bytes()));
        }
    }
    app.all_refused_because(false, "algorithm_not_allowed", &tokens).await;
    // Control: the same key and payload under the exact name verifies.
    assert_eq!(app.review(&rs.sign_payload(&payload)).await, authenticated(V1, "alice"));
}

/// A04: HS256 keyed with every encoding of the issuer's public key an attacker can obtain
/// (PEM and JWK text are in `token_review.rs`; here DER, the raw modulus and the JWKS document).
#[tokio::test]
async fn hs256_keyed_with_public_key_der_modulus_or_jwks_is_rejected() {
    let app = spawn_app().await;
    let claims = app.issuer.claims("alice");
    let pem = app.issuer.public_pem("rs256-1").unwrap();
    let der: Vec<u8> = {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
    };
    let modulus = unb64(app.issuer.public_jwk("rs256-1").unwrap()["n"].as_str().unwrap());
    let document = json!({"keys": [app.issuer.public_jwk("rs256-1").unwrap()]}).to_string();
    let mut tokens = Vec::new();
    for secret in [der.as_slice(), modulus.as_slice(), document.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs256-1".into());
        tokens.push(jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap());
    }
    app.all_refused_because(true, "algorithm_not_allowed", &tokens).await;
}

/// A05 (policy, not library): the validation is chosen from the issuer's configured list, and a
/// key whose JWK names an algorithm verifies only that one. Here the same RSA key is published
/// as RS256-only; a PS256 signature by it is refused, RS256 accepted.
#[tokio::test]
async fn a_key_published_for_one_alg_does_not_verify_another() {
    let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::ES256]).await.unwrap();
    let rs = Forger::new(Algorithm::RS256, "bound");
    let mut jwk = rs.jwk.clone();
    jwk["alg"] = json!("RS256");
    issuer.publish_raw(jwk);
    let app = spawn_gateway(issuer, |_| {}).await;
    let payload = app.payload("alice");
    let ps_header = json!({"alg": "PS256", "kid": "bound"}).to_string();
    let ps = rs.sign_bytes_as(Algorithm::PS256, ps_header.as_bytes(), payload.as_bytes());
    app.all_refused_because(true, "no_matching_key", &[ps]).await;
    assert_eq!(app.review(&rs.sign_payload(&payload)).await, authenticated(V1, "alice"));
}

/// A06: an `oct` key in the JWKS is dropped at load, so HS256 with its secret verifies nothing,
/// and HS* cannot be configured for an issuer at all.
#[tokio::test]
async fn an_oct_key_in_the_jwks_never_verifies_hs256() {
    let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    issuer.publish_raw(json!({"kty": "oct", "kid": "hmac-1", "k": b64("attacker-known-secret"), "alg": "HS256"}));
    let app = spawn_gateway(issuer, |_| {}).await;
    let url = app.issuer.url().to_string();
    assert_eq!(app.metric("tokenreview_gateway_keys", &[("issuer", &url)]).await, 1.0, "only rs256-1 is held");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac-1".into());
    let key = EncodingKey::from_secret(b"attacker-known-secret").unwrap();
    let token = jsonwebtoken::encode(&header, &app.issuer.claims("mallory"), &key).unwrap();
    app.all_refused_because(true, "algorithm_not_allowed", &[token]).await;

    let mut settings = app.issuer.gateway_settings("127.0.0.1:0");
    settings.jwt[0].algorithms = Some(vec!["HS256".into()]);
    assert!(settings.validate().is_err(), "HS256 must not be configurable for an issuer");
}

/// A07 (beyond `token_review.rs`): each algorithm outside an RS256-only list is refused even
/// when its signature is genuine, before any key is looked up.
#[tokio::test]
async fn algs_outside_the_issuers_list_are_rejected() {
    let (app, rs, es) = app_with_forgers(|s| s.jwt[0].algorithms = Some(vec!["RS256".into()])).await;
    let payload = app.payload("alice");
    let mut tokens = Vec::new();
    for alg in [Algorithm::PS256, Algorithm::PS512, Algorithm::RS512] {
        let h = json!({"alg": format!("{alg:?}"), "kid": rs.kid}).to_string();
        tokens.push(rs.sign_bytes_as(alg, h.as_bytes(), payload.as_bytes()));
    }
    tokens.push(es.sign_payload(&payload));
    app.all_refused_because(true, "algorithm_not_allowed", &tokens).await;
}

fn with_signature(token: &str, signature: &str) -> String {
    let (message, _) = token.rsplit_once('.').unwrap();
    format!("{message}.{signature}")
}

/// A09: the signature cut short or extended by whole bytes (a well-formed segment that does
/// not verify), cut mid-character (not canonical base64url), or empty (not a compact JWS).
#[tokio::test]
async fn empty_or_truncated_signature_is_rejected() {
    let app = spawn_app().await;
    let good = app.token("rs256-1", "alice");
    let sig = good.rsplit_once('.').unwrap().1.to_string();
    let bytes = unb64(&sig);
    let mut longer = bytes.clone();
    longer.push(0);
    let short: Vec<String> = [&bytes[..255], &bytes[..128], &bytes[..1], &longer[..]]
        .iter()
        .map(|b| with_signature(&good, &b64(b)))
        .collect();
    app.all_refused_because(true, "bad_signature", &short).await;
    // Cut to a length of 4k+1 characters, which no base64url encoding has. (Other cuts decode
    // when the key's random signature happens to leave the unused bits zero: a bad signature.)
    let odd = (sig.len() - 2) / 4 * 4 + 1;
    let cut: Vec<String> = [&sig[..odd], &sig[..1]].iter().map(|s| with_signature(&good, s)).collect();
    app.all_refused_because(true, "malformed_token", &cut).await;
    app.all_refused_because(false, "malformed_token", &[with_signature(&good, "")]).await;
}

/// A10: CVE-2022-21449, ES256 with r = s = 0.
#[tokio::test]
async fn psychic_signature_is_rejected() {
    let app = spawn_app().await;
    let good = app.token("es256-1", "alice");
    app.all_refused_because(true, "bad_signature", &[with_signature(&good, &b64([0u8; 64]))]).await;
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.first().is_some_and(|b| b & 0x80 != 0) { vec![0] } else { vec![] };
    v.extend(trimmed);
    let mut out = vec![0x02, v.len() as u8];
    out.extend(v);
    out
}

/// A11: an ECDSA signature in ASN.1 DER instead of raw r‖s (both the zero one and the genuine
/// signature re-encoded).
#[tokio::test]
async fn der_encoded_ecdsa_signature_is_rejected() {
    let app = spawn_app().await;
    let good = app.token("es256-1", "alice");
    let raw = unb64(good.rsplit_once('.').unwrap().1);
    let (r, s) = raw.split_at(32);
    let mut body = der_integer(r);
    body.extend(der_integer(s));
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    let tokens = [with_signature(&good, &b64([0x30, 6, 2, 1, 0, 2, 1, 0])), with_signature(&good, &b64(der))];
    app.all_refused_because(true, "bad_signature", &tokens).await;
}

/// A12: s replaced by n − s is still a valid ES256 signature. It is accepted, and it is a
/// different token string: nothing in the gateway keys security on token uniqueness (the result
/// cache is keyed by the token, so the twin is simply verified again and gets the same user).
#[tokio::test]
async fn ecdsa_high_s_twin_is_accepted_with_the_same_identity() {
    let app = spawn_app().await;
    let good = app.token("es256-1", "alice");
    let raw = unb64(good.rsplit_once('.').unwrap().1);
    let mut twin = raw[..32].to_vec();
    twin.extend(sub256(&P256_N, &raw[32..]));
    let twin_token = with_signature(&good, &b64(&twin));
    assert_ne!(twin_token, good);
    assert_eq!(app.review(&good).await, authenticated(V1, "alice"));
    assert_eq!(app.review(&twin_token).await, authenticated(V1, "alice"));
}

/// A13: non-canonical base64url: unused trailing bits set, padding, the standard alphabet,
/// whitespace and line breaks inside a segment.
#[tokio::test]
async fn non_canonical_base64url_is_rejected() {
    let app = spawn_app().await;
    // RS256: 256 signature bytes are 342 characters, so the last one carries 4 unused bits.
    let good = app.token("rs256-1", "alice");
    let (message, sig) = good.rsplit_once('.').unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = alphabet.find(sig.chars().last().unwrap()).unwrap();
    let flipped = alphabet.chars().nth(last ^ 1).unwrap();
    let trailing_bits = format!("{message}.{}{flipped}", &sig[..sig.len() - 1]);
    let mut tokens = vec![
        trailing_bits,
        format!("{good}=="),
        format!("{message}.{}", sig.replace('-', "+").replace('_', "/")),
        format!("{message}.{} {}", &sig[..10], &sig[10..]),
        format!("{message}.{}\n{}", &sig[..10], &sig[10..]),
        format!(" {good}"),
        format!("{good}\n"),
    ];
    tokens.retain(|t| t != &good);
    // Refused by our pre-parser (outside the alphabet) or by the library's strict decoder.
    let (outside_alphabet, inside): (Vec<String>, Vec<String>) =
        tokens.into_iter().partition(|t| t.contains(['=', '+', '/', ' ', '\n']));
    app.all_refused_because(false, "malformed_token", &outside_alphabet).await;
    app.all_refused_because(true, "malformed_token", &inside).await;
    assert_eq!(app.review(&good).await, authenticated(V1, "alice"));
}

/// A14: RSA keys of 512 and 1024 bits are not admitted; a token naming one is an unknown kid.
#[tokio::test]
async fn weak_rsa_keys_are_dropped_at_load() {
    let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let real_n = unb64(issuer.public_jwk("rs256-1").unwrap()["n"].as_str().unwrap());
    for (kid, bytes) in [("weak-512", 64), ("weak-1024", 128), ("weak-2047", 256)] {
        let mut n = real_n[..bytes].to_vec();
        if kid == "weak-2047" {
            n[0] = 0x7f; // one bit short of 2048
        }
        issuer.publish_raw(json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB", "use": "sig"}));
    }
    let app = spawn_gateway(issuer, |_| {}).await;
    let url = app.issuer.url().to_string();
    assert_eq!(app.metric("tokenreview_gateway_keys", &[("issuer", &url)]).await, 1.0);
    let tokens: Vec<String> =
        ["weak-512", "weak-1024", "weak-2047"].iter().map(|k| app.token_with_unknown_kid(k)).collect();
    for t in &tokens {
        assert_eq!(app.review(t).await, rejected(V1));
    }
}

/// A15: an 8192-bit RSA key is admitted (aws-lc verifies up to 8192 bits); 8200 bits is not.
/// (Generating an 8192-bit key to sign with would cost the suite seconds; the signature path is
/// the same as for 2048 bits, which every other test exercises.)
#[tokio::test]
async fn an_8192_bit_rsa_key_is_admitted_and_a_larger_one_is_not() {
    let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let real_n = unb64(issuer.public_jwk("rs256-1").unwrap()["n"].as_str().unwrap());
    let big: Vec<u8> = real_n.iter().cycle().take(1024).copied().collect();
    let mut bigger = big.clone();
    bigger.push(0x01);
    issuer.publish_raw(json!({"kty": "RSA", "kid": "rsa-8192", "n": b64(&big), "e": "AQAB"}));
    issuer.publish_raw(json!({"kty": "RSA", "kid": "rsa-8200", "n": b64(&bigger), "e": "AQAB"}));
    let app = spawn_gateway(issuer, |_| {}).await;
    let url = app.issuer.url().to_string();
    assert_eq!(app.metric("tokenreview_gateway_keys", &[("issuer", &url)]).await, 2.0);
}

/// A16: algorithms jsonwebtoken does not implement; refused at the pre-parser, no I/O.
#[tokio::test]
async fn unsupported_algs_are_rejected_without_io() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let payload = b64(app.payload("alice"));
    // (ES512 was one until the gateway verified it: tests/api/algorithms.rs.)
    let tokens: Vec<String> = ["ES256K", "ES521", "RS1", "HS1", "RSA-OAEP", "dir", "A128KW"]
        .iter()
        .map(|alg| format!("{}.{payload}.{}", b64(format!(r#"{{"alg":"{alg}","kid":"rs256-1"}}"#)), b64([7u8; 64])))
        .collect();
    app.all_refused_because(false, "algorithm_not_allowed", &tokens).await;
    assert_eq!(app.issuer.requests(), before);
}

/// A18: the same header and payload re-encoded (extra whitespace, reordered keys) keep the old
/// signature: the signature covers the bytes, not the meaning.
#[tokio::test]
async fn signature_over_re_encoded_json_is_rejected() {
    let app = spawn_app().await;
    let good = app.token("rs256-1", "alice");
    let parts: Vec<&str> = good.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    let tokens = [
        format!("{}.{}.{}", b64(serde_json::to_string_pretty(&header).unwrap()), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(serde_json::to_string_pretty(&payload).unwrap()), parts[2]),
        format!("{}.{}.{}", parts[0], b64(format!(" {}", String::from_utf8(unb64(parts[1])).unwrap())), parts[2]),
    ];
    app.all_refused_because(true, "bad_signature", &tokens).await;
}
