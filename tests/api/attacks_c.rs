//! Attack matrix, section C (claims and identity mapping). Rows already covered in
//! `token_review.rs` are referenced in docs/security-tests.md; these add the variants.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenreview_gateway::dev::DevIssuer;

use crate::attack_kit::*;
use crate::helpers::*;

/// C01: a token validly signed by a foreign issuer (a real, reachable OIDC provider) naming
/// itself: refused, and neither provider gets a single request.
#[tokio::test]
async fn a_foreign_issuers_valid_token_causes_no_request() {
    let app = spawn_app().await;
    let foreign = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let (ours, theirs) = (app.issuer.requests(), foreign.requests());
    let token = foreign.sign("rs256-1", &foreign.claims("mallory")).unwrap();
    app.all_refused_because(false, "unknown_issuer", &[token]).await;
    assert_eq!((app.issuer.requests(), foreign.requests()), (ours, theirs));
}

/// C02: near-misses of the configured issuer, each signed with the issuer's real key.
#[tokio::test]
async fn issuer_near_misses_are_unknown_issuers() {
    let app = spawn_app().await;
    let url = app.issuer.url().to_string();
    let port = url.rsplit(':').next().unwrap().to_string();
    let other_port = (port.parse::<u32>().unwrap() + 1).to_string();
    let variants = [
        format!("{url}/"),
        url.to_uppercase(),
        url.replace("https://", "HTTPS://"),
        url.replace("https", "http"),
        url.replace(&port, &other_port),
        url.replace("https://", ""),
        url.replace("127.0.0.1", "localhost"),
        url.replace("127.0.0.1", "127.0.0.01"),
        format!(" {url}"),
        format!("{url} "),
        format!("{url}\u{0}"),
        format!("{url}\u{200b}"),
        url.replace("https", "httрs"), // Cyrillic р
        format!("{url}/.well-known/openid-configuration"),
        format!("{url}#"),
        format!("{url}?"),
    ];
    let before = app.issuer.requests();
    let tokens: Vec<String> = variants.iter().map(|iss| app.token_with(|c| c["iss"] = json!(iss))).collect();
    app.all_refused_because(false, "unknown_issuer", &tokens).await;
    assert_eq!(app.issuer.requests(), before);
}

/// C04/C05 variants: `iss` or `aud` present but null, empty, or of the wrong type.
#[tokio::test]
async fn null_empty_or_mistyped_iss_and_aud_are_rejected() {
    let app = spawn_app().await;
    let cases = [("iss", json!(null)), ("iss", json!("")), ("iss", json!([app.issuer.url()])), ("iss", json!(1))];
    for (claim, value) in cases {
        let token = app.token_with(|c| c[claim] = value.clone());
        assert_eq!(app.review(&token).await, rejected(V1), "{claim} {value}");
    }
    for value in [json!(null), json!(""), json!([]), json!(1), json!({"kubernetes": true}), json!([null])] {
        let token = app.token_with(|c| c["aud"] = value.clone());
        assert_eq!(app.review(&token).await, rejected(V1), "aud {value}");
    }
}

/// C08 (beyond the string/null/bool cases in `token_review.rs`): absurd numbers and shapes.
#[tokio::test]
async fn malformed_exp_values_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let base = app.issuer.claims("alice").to_string();
    let exp = format!("\"exp\":{}", now() + 3600);
    let tokens: Vec<String> = [
        "-1",
        "0",
        "1",
        "1e300",
        "-1e300",
        "18446744073709551616",
        "1e19",
        "[9999999999]",
        "{\"t\":9999999999}",
        "\"\"",
        "\"9999999999\"",
        "1.8e308",
    ]
    .iter()
    .map(|v| rs.sign_payload(&base.replace(&exp, &format!("\"exp\":{v}"))))
    .collect();
    app.all_refused_among(true, &["invalid_claim", "expired", "malformed_token", "missing_exp"], &tokens).await;
}

/// C12 (CVE-2026-25537): `nbf` of the wrong type while `exp` is fine.
#[tokio::test]
async fn nbf_of_the_wrong_type_is_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let mut tokens = Vec::new();
    for nbf in [json!("99999999999"), json!("0"), json!(true), json!([0]), json!({})] {
        let mut claims = app.issuer.claims("alice");
        claims["nbf"] = nbf;
        tokens.push(rs.sign_payload(&claims.to_string()));
    }
    // A wrong scalar is the library's InvalidClaimFormat; a list or object fails its typed parse.
    app.all_refused_among(true, &["invalid_claim", "malformed_token"], &tokens).await;
}

/// C13: `iat` is not checked by default (Kubernetes parity: the contract follows kube-apiserver's
/// JWT authenticator, which ignores it); an operator who wants a lifetime cap writes a claim rule,
/// and then a far-future `iat`, a missing `iat` or a ten-year token are all refused.
#[tokio::test]
async fn iat_abuse_is_refused_by_a_configured_lifetime_rule() {
    let far_future_iat = |c: &mut Value| c["iat"] = json!(now() + 10 * 365 * 86400);
    let plain = spawn_app().await;
    assert_eq!(plain.review(&plain.token_with(far_future_iat)).await, authenticated(V1, "alice"));

    let app = spawn_app_with(|s| {
        let rules: Vec<tokenreview_gateway::config::ClaimValidationRule> = serde_json::from_value(json!([
            {"expression": "claims.exp - claims.iat <= 86400", "message": "at most a day"},
            {"expression": "claims.iat <= claims.exp", "message": "issued before expiry"}
        ]))
        .unwrap();
        s.jwt[0].claim_validation_rules = Some(rules);
    })
    .await;
    let tokens = [
        app.token_with(|c| c["iat"] = json!(now() - 5)),
        app.token_with(far_future_iat),
        app.token_with(|c| {
            c.as_object_mut().unwrap().remove("iat");
        }),
        app.token_with(|c| c["exp"] = json!(now() + 10 * 365 * 86400)),
    ];
    assert_eq!(app.review(&tokens[0]).await, authenticated(V1, "alice"));
    for t in &tokens[1..] {
        assert_eq!(app.review(t).await, rejected(V1));
    }
}

/// C14: `exp` of 1 (1970) with any leeway.
#[tokio::test]
async fn exp_in_1970_is_rejected_whatever_the_leeway() {
    let app = spawn_app_with(|s| s.jwt[0].clock_skew_seconds = Some(300)).await;
    app.all_refused_because(true, "expired", &[app.token_with(|c| c["exp"] = json!(1))]).await;
}

/// C16: reserved usernames in any case (the dev mapping has no username prefix).
#[tokio::test]
async fn reserved_usernames_in_any_case_are_rejected() {
    let app = spawn_app().await;
    let tokens: Vec<String> = [
        "system:admin",
        "system:node:n1",
        "system:serviceaccount:kube-system:x",
        "System:admin",
        "SYSTEM:kube-controller-manager",
        "system:",
    ]
    .iter()
    .map(|u| app.token_with(|c| c["email"] = json!(u)))
    .collect();
    app.all_refused_because(true, "reserved_name", &tokens).await;
}

/// C17: reserved groups, alone or among others, in any case; also as a single string.
#[tokio::test]
async fn reserved_groups_are_rejected() {
    let app = spawn_app_with(|s| s.jwt[0].claim_mappings.groups.as_mut().unwrap().prefix = Some(String::new())).await;
    let tokens: Vec<String> = [
        json!(["system:masters"]),
        json!(["developers", "system:nodes"]),
        json!(["system:bootstrappers"]),
        json!("SYSTEM:MASTERS"),
        json!(["System:Authenticated"]),
    ]
    .iter()
    .map(|g| app.token_with(|c| c["groups"] = g.clone()))
    .collect();
    app.all_refused_because(true, "reserved_name", &tokens).await;
}

/// C18: groups of the wrong shape or size.
#[tokio::test]
async fn abusive_group_shapes_are_rejected() {
    let app = spawn_app().await;
    let shapes = [json!({"a": "b"}), json!(7), json!([["nested"]]), json!(["ok", 1]), json!([null]), json!(true)];
    let tokens: Vec<String> = shapes.iter().map(|g| app.token_with(|c| c["groups"] = g.clone())).collect();
    app.all_refused_because(true, "invalid_groups", &tokens).await;
    let control = app.token_with(|c| c["groups"] = json!(["dev\nops"]));
    app.all_refused_because(true, "invalid_characters", &[control]).await;
    // 5 000 groups fit the 128 KiB body but not the default 64 KiB token cap...
    let many: Vec<String> = (0..5_000).map(|i| format!("group-{i}")).collect();
    app.all_refused_because(false, "token_too_large", &[app.token_with(|c| c["groups"] = json!(many))]).await;
    // ...and `groupRules.maxGroups` bounds what does fit.
    let capped = spawn_app_with(|s| {
        s.jwt[0].group_rules = Some(serde_json::from_value(json!({"maxGroups": 100})).unwrap());
    })
    .await;
    let hundred_one: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
    capped
        .all_refused_because(true, "too_many_groups", &[capped.token_with(|c| c["groups"] = json!(hundred_one))])
        .await;
}

/// C19: `email_verified` anything but the boolean true (false, strings, numbers, null).
#[tokio::test]
async fn email_verified_must_be_boolean_true() {
    let app = spawn_app().await;
    let tokens: Vec<String> = [json!(false), json!("true"), json!("True"), json!(1), json!(null), json!([true])]
        .iter()
        .map(|v| app.token_with(|c| c["email_verified"] = v.clone()))
        .collect();
    app.all_refused_because(true, "email_not_verified", &tokens).await;
}

/// C20: empty or blank usernames, and ones with line breaks (log forging).
#[tokio::test]
async fn empty_blank_or_multiline_usernames_are_rejected() {
    let app = spawn_app().await;
    app.all_refused_because(true, "empty_username", &[app.token_with(|c| c["email"] = json!(""))]).await;
    let blank: Vec<String> =
        [" ", "   ", "\u{3000}", "\u{a0}"].iter().map(|u| app.token_with(|c| c["email"] = json!(u))).collect();
    app.all_refused_because(true, "empty_username", &blank).await;
    let multiline: Vec<String> = ["alice\r\nuser: admin", "alice\n", "\u{0}admin", "alice\u{85}"]
        .iter()
        .map(|u| app.token_with(|c| c["email"] = json!(u)))
        .collect();
    app.all_refused_because(true, "invalid_characters", &multiline).await;
}

/// C22: distributed claims pointing at a watched listener and at cloud metadata are ignored:
/// the token is judged on its own claims, and no connection is made.
#[tokio::test]
async fn distributed_claim_sources_are_never_fetched() {
    let app = spawn_app().await;
    let trap = Tripwire::new();
    let before = app.issuer.requests();
    let token = app.token_with(|c| {
        c["_claim_names"] = json!({"groups": "src1", "email": "src2"});
        c["_claim_sources"] = json!({
            "src1": {"endpoint": trap.url("/groups"), "access_token": "x"},
            "src2": {"endpoint": "http://169.254.169.254/latest/meta-data/iam"}
        });
    });
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    trap.assert_untouched(&app, before).await;
}

/// C23: genuinely signed payloads that are not a UTF-8 JSON object.
#[tokio::test]
async fn payloads_that_are_not_a_json_object_are_rejected() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let object = app.payload("alice");
    let utf16: Vec<u8> = object.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend(object.as_bytes());
    let mut invalid = object.clone().into_bytes();
    invalid.insert(10, 0xff);
    let header = rs.header();
    // Invalid UTF-8 inside a string the pre-parser skips is caught by the library's parse.
    app.all_refused_because(true, "malformed_token", &[rs.sign_bytes(rs.header().as_bytes(), &invalid)]).await;
    let payloads: Vec<Vec<u8>> = vec![
        utf16,
        bom,
        format!("[{object}]").into_bytes(),
        b"\"alice\"".to_vec(),
        b"42".to_vec(),
        b"null".to_vec(),
        Vec::new(),
    ];
    let tokens: Vec<String> = payloads.iter().map(|p| rs.sign_bytes(header.as_bytes(), p)).collect();
    // The empty payload is an empty segment: not a compact JWS either.
    app.all_refused_because(false, "malformed_token", &tokens).await;
}

/// C24: 10 000 nested arrays in a custom claim: refused by serde_json's depth limit, no stack
/// overflow, and the gateway keeps serving.
#[tokio::test]
async fn deeply_nested_claims_are_rejected_without_crashing() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let object = app.payload("alice");
    let deep = format!("{},\"deep\":{}{}}}", &object[..object.len() - 1], "[".repeat(10_000), "]".repeat(10_000));
    let token = rs.sign_payload(&deep);
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(app.review(&rs.sign_payload(&object)).await, authenticated(V1, "alice"));
}

/// C25: this cluster's service-account issuer cannot be configured.
#[tokio::test]
async fn the_service_account_issuer_cannot_be_configured() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    for url in ["https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local"] {
        let mut s = issuer.gateway_settings("127.0.0.1:0");
        s.jwt[0].issuer.url = url.to_string();
        assert!(s.validate().is_err(), "{url}");
    }
}

/// C26: tokens of one IdP for other purposes. With `aud` they are told apart by audience; an
/// issuer that mints several kinds for one audience needs a claim rule, which then holds.
#[tokio::test]
async fn cross_jwt_confusion_is_refused_by_audience_or_claim_rule() {
    let app = spawn_app_with(|s| {
        s.jwt[0].claim_validation_rules =
            Some(serde_json::from_value(json!([{"claim": "token_use", "requiredValue": "id"}])).unwrap());
    })
    .await;
    let id_token = app.token_with(|c| c["token_use"] = json!("id"));
    assert_eq!(app.review(&id_token).await, authenticated(V1, "alice"));
    let tokens = [
        app.token_with(|c| c["token_use"] = json!("access")),
        app.token_with(|c| {
            c["token_use"] = json!("logout");
            c["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
        }),
        app.token_with(|c| {
            c.as_object_mut().unwrap().remove("token_use");
        }),
    ];
    app.all_refused_because(true, "claim_rule_failed", &tokens).await;
    let other_rp = app.token_with(|c| {
        c["token_use"] = json!("id");
        c["aud"] = json!("another-client");
    });
    app.all_refused_because(true, "wrong_audience", &[other_rp]).await;
}

/// C27: a float `exp` is valid (RFC 7519 NumericDate) and accepted; so are exponent notation
/// and a fractional `iat`/`nbf` in the past.
#[tokio::test]
async fn float_and_exponent_numeric_dates_are_accepted() {
    let (app, rs, _) = app_with_forgers(|_| {}).await;
    let mut claims = app.issuer.claims("alice");
    // `iat` is given below; a second one would be a duplicate member, which is refused.
    claims.as_object_mut().unwrap().remove("iat");
    let base = claims.to_string();
    let exp = format!("\"exp\":{}", now() + 3600);
    for v in [format!("{}.5", now() + 3600), "4e9".to_string(), format!("{}.0", now() + 60)] {
        let token = rs.sign_payload(&base.replace(&exp, &format!("\"exp\":{v},\"nbf\":1.5,\"iat\":{}.25", now())));
        assert_eq!(app.review(&token).await, authenticated(V1, "alice"), "exp {v}");
    }
}
