//! Cases of our own past the matrix, at least one per invariant of security.md section 1.4
//! (I1–I10); docs/security-tests.md lists them with the invariant each protects.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokenreview_gateway::config::CallerAuthSettings;
use tokenreview_gateway::dev::DevIssuer;

use crate::attack_kit::*;
use crate::helpers::*;

/// The claims of a valid token as JSON text with `"name":value` members appended at the end.
fn with_members(app: &TestApp, members: &str) -> String {
    let base = app.payload("alice");
    format!("{},{members}}}", &base[..base.len() - 1])
}

/// I1: duplicate registered claims (an expired `exp` followed by a valid one, and the other
/// orders) are rejected, never resolved in the token's favour.
#[tokio::test]
async fn duplicate_registered_claims_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let (past, future) = (now() - 3600, now() + 3600);
    let tokens: Vec<String> = [
        format!(r#""exp":{past}"#),
        format!(r#""exp":{future}"#),
        r#""aud":"vault""#.to_string(),
        r#""aud":"kubernetes""#.to_string(),
        format!(r#""nbf":{future}"#),
        r#""iss":"https://evil.example""#.to_string(),
        format!(r#""iss":"{}""#, app.issuer.url()),
    ]
    .iter()
    .map(|m| rs.sign_payload(&with_members(&app, m)))
    .collect();
    // Whether the pre-parser (duplicate `iss`) or the library (the others) notices first, the
    // answer is the same definite rejection.
    for t in &tokens {
        assert_eq!(app.review(t).await, rejected(V1));
    }
    let nbf_twice = rs.sign_payload(&with_members(&app, &format!(r#""nbf":{future},"nbf":1"#)));
    assert_eq!(app.review(&nbf_twice).await, rejected(V1));
}

/// I1: a member name repeated anywhere in the payload, private claims and nested objects
/// included, rejects the token: parsers disagree on which duplicate wins (first, last, error),
/// and kube-apiserver's audit log, a SIEM and we must never read different claims from it.
#[tokio::test]
async fn duplicate_private_claims_at_any_depth_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let tokens: Vec<String> = [
        r#""email":"system:admin","email":"bob@example.com""#,
        r#""groups":["system:masters"],"groups":["ops"]"#,
        r#""email_verified":true,"email_verified":false"#,
        r#""x":{"role":"viewer","role":"admin"}"#,
        r#""x":[{"k":{"a":1,"a":2}}]"#,
    ]
    .iter()
    .map(|m| rs.sign_payload(&with_members(&app, m)))
    .collect();
    app.all_refused_because(true, "malformed_token", &tokens).await;
    let distinct = rs.sign_payload(&with_members(&app, r#""x":{"role":"a"},"y":{"role":"b"}"#));
    assert_eq!(app.review(&distinct).await, authenticated(V1, "alice"), "one name in two objects is fine");
}

/// I1/I2: numeric edge cases for the registered dates never authenticate.
#[tokio::test]
async fn numeric_edge_cases_of_dates_never_authenticate() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let base = app.issuer.claims("alice");
    let mut tokens = Vec::new();
    for exp in ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "-0.0", "1e-300", "0.5"] {
        let mut c = base.as_object().unwrap().clone();
        c.remove("exp");
        let text = Value::Object(c).to_string();
        tokens.push(rs.sign_payload(&format!("{},\"exp\":{exp}}}", &text[..text.len() - 1])));
    }
    for nbf in ["1e300", "9223372036854775807"] {
        tokens.push(rs.sign_payload(&with_members(&app, &format!("\"nbf\":{nbf}"))));
    }
    app.all_refused_among(
        true,
        &["invalid_claim", "expired", "malformed_token", "missing_exp", "not_yet_valid"],
        &tokens,
    )
    .await;
}

/// I1: tokens as real providers mint them verify: Azure-style headers (`x5t`, `typ: JWT`),
/// RFC 9068 `typ: at+jwt`, a single audience in a list, no `kid` at all, claims of every JSON type.
#[tokio::test]
async fn odd_but_valid_provider_tokens_are_accepted() {
    let (app, rs, es) = app_with_forgers(|_| {}).await;
    let payload = with_members(
        &app,
        r#""ver":"2.0","tid":"9188040d","amr":["pwd","mfa"],"acr":1.0,"nonce":null,"ctx":{"a":[{}]},"uti":"x""#,
    );
    let headers = [
        json!({"typ": "JWT", "alg": "RS256", "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "kid": rs.kid}),
        json!({"typ": "at+jwt", "alg": "RS256", "kid": rs.kid}),
        json!({"alg": "RS256"}),
    ];
    for h in &headers {
        let token = rs.sign_bytes(h.to_string().as_bytes(), payload.as_bytes());
        assert_eq!(app.review(&token).await, authenticated(V1, "alice"), "{h}");
    }
    let single_aud_list = payload.replace(r#""aud":"kubernetes""#, r#""aud":["kubernetes"]"#);
    assert_eq!(app.review(&es.sign_payload(&single_aud_list)).await, authenticated(V1, "alice"));
}

/// I2: a token without `kid` signed by a key the issuer does not publish fails, even though the
/// issuer has several keys that fit its algorithm.
#[tokio::test]
async fn a_token_without_kid_signed_by_an_unpublished_key_is_rejected() {
    let (app, _, _) = app_with_forgers(|_| {}).await;
    let stranger = Forger::new(Algorithm::RS256, "stranger");
    let token = stranger.sign_bytes(br#"{"alg":"RS256"}"#, app.payload("alice").as_bytes());
    app.all_refused_because(true, "bad_signature", &[token]).await;
}

/// I3: a `kid` or an `iss` that is a URL is never contacted; nor is Google's legacy scheme-less
/// issuer resolved when Google is not configured.
#[tokio::test]
async fn urls_in_kid_and_iss_are_never_contacted() {
    let app = spawn_app().await;
    let trap = Tripwire::new();
    let before = app.issuer.requests();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(trap.url("/keys"));
    let by_kid = app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("alice")).unwrap();
    let by_iss = app.token_with(|c| c["iss"] = json!(trap.url("")));
    let google = app.token_with(|c| c["iss"] = json!("accounts.google.com"));
    assert_eq!(app.review(&by_kid).await, rejected(V1));
    app.all_refused_because(false, "unknown_issuer", &[by_iss, google]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(trap.connections(), 0);
    assert!(app.issuer.requests() - before <= 2, "at most the one unknown-kid refresh (discovery + JWKS)");
}

/// I4: with two issuers, a token without `kid` claiming issuer A but signed by B's key is never
/// tried against B's keys.
#[tokio::test]
async fn a_kidless_token_is_tried_only_against_its_own_issuers_keys() {
    let other = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let app = spawn_app_with(|s| trust_second_issuer(s, &other)).await;
    let header = Header::new(Algorithm::RS256);
    let forged = other.sign_with_header("rs256-1", &header, &app.issuer.claims("mallory")).unwrap();
    app.all_refused_because(true, "bad_signature", &[forged]).await;
    let mut own = other.claims("carol");
    own["iss"] = json!(other.url());
    assert_eq!(
        app.review(&other.sign_with_header("rs256-1", &header, &own).unwrap()).await["status"]["authenticated"],
        true
    );
}

/// I4/I8: a kid published twice (here: a second key under `rs256-1`) is ambiguous, and neither
/// key verifies; other kids keep working.
#[tokio::test]
async fn a_kid_published_twice_verifies_nothing() {
    let issuer = DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256]).await.unwrap();
    let impostor = Forger::new(Algorithm::RS256, "rs256-1");
    issuer.publish_raw(impostor.jwk.clone());
    let app = spawn_gateway(issuer, |_| {}).await;
    let genuine = app.token("rs256-1", "alice");
    let forged = impostor.sign_payload(&app.payload("mallory"));
    app.all_refused_because(true, "unknown_kid", &[genuine, forged]).await;
    assert_eq!(app.review(&app.token("es256-1", "bob")).await, authenticated(V1, "bob"));
}

/// I5: look-alikes of `system:` (long s, fullwidth, Cyrillic, zero-width, combining marks) are
/// passed through byte for byte, never case-folded or normalised into a real `system:` name.
#[tokio::test]
async fn unicode_lookalikes_of_system_are_kept_verbatim() {
    let app = spawn_app().await;
    for name in [
        "\u{17f}ystem:admin",
        "ｓｙｓｔｅｍ:admin",
        "ѕystem:admin",
        "system\u{200b}:admin",
        "\u{200b}system:admin",
        "s\u{301}ystem:admin",
        "system\u{ff1a}admin",
    ] {
        let token = app.token_with(|c| {
            c["email"] = json!(name);
            c["groups"] = json!([name]);
        });
        let answer = app.review(&token).await;
        assert_eq!(answer["status"]["user"]["username"], name, "{name:?}");
        assert_eq!(answer["status"]["user"]["groups"], json!([format!("oidc:{name}")]), "{name:?}");
    }
}

/// I5: bidirectional-override and isolate controls in names (which make `system:masters` and
/// other names display as something else in audit logs and `kubectl` output) are refused.
#[tokio::test]
async fn bidi_controls_in_names_are_rejected() {
    let app = spawn_app().await;
    let names = ["alice\u{202e}moc.elpmaxe@", "\u{2066}admin\u{2069}", "dev\u{200f}", "\u{61c}ops"];
    let mut tokens: Vec<String> = names.iter().map(|n| app.token_with(|c| c["email"] = json!(n))).collect();
    tokens.extend(names.iter().map(|n| app.token_with(|c| c["groups"] = json!(["developers", n]))));
    app.all_refused_because(true, "invalid_characters", &tokens).await;
}

/// I5: a group prefix and a claim value that spell `system:` together are refused.
#[tokio::test]
async fn a_prefix_and_value_cannot_spell_system_together() {
    let app = spawn_app_with(|s| s.jwt[0].claim_mappings.groups.as_mut().unwrap().prefix = Some("sys".into())).await;
    let token = app.token_with(|c| c["groups"] = json!(["tem:masters"]));
    app.all_refused_because(true, "reserved_name", &[token]).await;
}

/// I5: an expression that strips `system:` (and so mentions it) does not become a licence to
/// emit reserved names: `ssystem:ystem:masters` minus `system:` is refused, not granted.
#[tokio::test]
async fn a_sanitising_expression_cannot_be_tricked_into_granting_system() {
    let app = spawn_app_with(|s| {
        let groups = s.jwt[0].claim_mappings.groups.as_mut().unwrap();
        (groups.claim, groups.prefix) = (None, None);
        groups.expression = Some("claims.groups.map(g, g.replace('system:', ''))".into());
    })
    .await;
    let token = app.token_with(|c| c["groups"] = json!(["dev", "ssystem:ystem:masters"]));
    app.all_refused_because(true, "reserved_name", &[token]).await;
    let answer = app.review(&app.token_with(|c| c["groups"] = json!(["system:dev"]))).await;
    assert_eq!(answer["status"]["user"]["groups"], json!(["dev"]));
}

/// I6/I7: attacker-chosen values never become metric labels: fifty random issuers and kids leave
/// `/metrics` without any of them (and its size does not grow with them).
#[tokio::test]
async fn attacker_values_never_become_metric_labels() {
    let app = spawn_app().await;
    app.review(&app.token_with(|c| c["iss"] = json!("https://warmup.example"))).await;
    let (_, before) = app.get("/metrics").await;
    for i in 0..50 {
        app.review(&app.token_with(|c| c["iss"] = json!(format!("https://evil-{i}.example")))).await;
        app.review(&app.token_with_unknown_kid(&format!("kid-{i}-x"))).await;
    }
    let (_, after) = app.get("/metrics").await;
    assert!(!after.contains("evil-") && !after.contains("kid-"), "{after}");
    let lines = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert!(lines(&after) <= lines(&before) + 8, "metric series grew with attacker input");
}

/// I7: the token cap is exact: `maxTokenBytes` bytes are parsed, one more is refused unparsed;
/// a 256-byte kid is looked up, 257 bytes is refused.
#[tokio::test]
async fn the_token_and_kid_caps_are_exact() {
    let app = spawn_app_with(|s| s.server.max_token_bytes = 4096).await;
    let at_cap = format!("{}.e30.c2ln", "e".repeat(4096 - 9));
    assert_eq!(at_cap.len(), 4096);
    app.all_refused_because(false, "malformed_token", std::slice::from_ref(&at_cap)).await;
    app.all_refused_because(false, "token_too_large", &[format!("e{at_cap}")]).await;
    app.all_refused_because(true, "unknown_kid", &[app.token_with_unknown_kid(&"k".repeat(256))]).await;
    app.all_refused_because(false, "malformed_token", &[app.token_with_unknown_kid(&"k".repeat(257))]).await;
}

/// I9: caller bearer tokens that merely resemble the configured one are refused.
#[tokio::test]
async fn caller_token_lookalikes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caller-token");
    std::fs::write(&file, "caller-0123456789abcdef\n").unwrap();
    let app = spawn_app_with(|s| {
        s.server.auth = Some(CallerAuthSettings { bearer_token_file: file.to_str().unwrap().to_string() })
    })
    .await;
    let body = review_body(V1, &app.token("rs256-1", "alice")).to_string();
    let send = |auth: &str| {
        app.client
            .post(format!("{}/authenticate", app.address))
            .header("Content-Type", "application/json")
            .header("Authorization", auth)
            .body(body.clone())
            .send()
    };
    assert_eq!(send("Bearer caller-0123456789abcdef").await.unwrap().status(), 200);
    for auth in [
        "Bearer caller-0123456789abcdefX",
        "Bearer caller-0123456789abcde",
        "bearer caller-0123456789abcdef",
        "Bearer caller-0123456789ABCDEF",
        "Bearer caller-0123456789 abcdef",
        "Bearer",
        "Bearer ",
        "caller-0123456789abcdef",
    ] {
        assert_eq!(send(auth).await.unwrap().status(), 401, "{auth:?}");
    }
}

/// I10: a JWT-shaped token that fails the JWT checks is answered on the JWT path, with no
/// request to any issuer (introspection, issue 6, will get its own routing tests).
#[tokio::test]
async fn a_jwt_shaped_failure_never_leaves_the_jwt_path() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let tokens: Vec<String> =
        ["aaaa.bbbb.cccc", "eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln", "a.b.c"].iter().map(|s| s.to_string()).collect();
    app.all_refused_because(false, "malformed_token", &tokens).await;
    assert_eq!(app.issuer.requests(), before);
}
