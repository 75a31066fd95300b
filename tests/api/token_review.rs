//! Tokens in, verdicts out: what kube-apiserver sees for good and bad tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_valid_token_is_authenticated_in_v1_with_the_mapped_user() {
    let app = spawn_app().await;
    let answer = app.review(&app.token("rs256-1", "alice")).await;
    assert_eq!(answer, authenticated(V1, "alice"));
}

#[tokio::test]
async fn a_v1beta1_review_is_answered_in_v1beta1() {
    let app = spawn_app().await;
    let (status, answer) = app.post_review(&review_body(V1BETA1, &app.token("rs256-1", "bob"))).await;
    assert_eq!(status, 200);
    assert_eq!(answer, authenticated(V1BETA1, "bob"));
}

#[tokio::test]
async fn rs256_es256_and_ps256_tokens_are_all_verified() {
    let app = spawn_app().await;
    for kid in ["rs256-1", "es256-1", "ps256-1"] {
        assert_eq!(app.review(&app.token(kid, "carol")).await, authenticated(V1, "carol"), "{kid}");
    }
}

#[tokio::test]
async fn jti_becomes_the_credential_id_extra() {
    let app = spawn_app().await;
    let answer = app.review(&app.token_with(|c| c["jti"] = json!("abc-123"))).await;
    assert_eq!(
        answer["status"]["user"]["extra"],
        json!({"authentication.kubernetes.io/credential-id": ["JTI=abc-123"]})
    );
}

#[tokio::test]
async fn audiences_in_the_request_are_never_echoed() {
    let app = spawn_app().await;
    let mut body = review_body(V1, &app.token("rs256-1", "alice"));
    body["spec"]["audiences"] = json!(["vault", "anything"]);
    let (_, answer) = app.post_review(&body).await;
    assert_eq!(answer, authenticated(V1, "alice"));
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let app = spawn_app().await;
    let token = app.token_with(|c| c["exp"] = json!(now() - 3600));
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn a_token_expired_within_the_leeway_is_accepted_and_beyond_it_rejected() {
    let app = spawn_app_with(|s| s.jwt[0].clock_skew_seconds = Some(120)).await;
    let within = app.token_with(|c| c["exp"] = json!(now() - 60));
    assert_eq!(app.review(&within).await, authenticated(V1, "alice"));
    let beyond = app.token_with(|c| c["exp"] = json!(now() - 240));
    assert_eq!(app.review(&beyond).await, rejected(V1));
}

#[tokio::test]
async fn a_token_not_yet_valid_is_rejected() {
    let app = spawn_app().await;
    let token = app.token_with(|c| c["nbf"] = json!(now() + 3600));
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn a_token_for_another_audience_is_rejected() {
    let app = spawn_app().await;
    for aud in [json!("vault"), json!(["vault", "grafana"]), json!([])] {
        let token = app.token_with(|c| c["aud"] = aud.clone());
        assert_eq!(app.review(&token).await, rejected(V1), "aud {aud}");
    }
    let listed = app.token_with(|c| c["aud"] = json!(["vault", "kubernetes"]));
    assert_eq!(app.review(&listed).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn tokens_missing_aud_iss_or_exp_are_rejected() {
    let app = spawn_app().await;
    for claim in ["aud", "iss", "exp"] {
        let token = app.token_with(|c| {
            c.as_object_mut().unwrap().remove(claim);
        });
        assert_eq!(app.review(&token).await, rejected(V1), "without {claim}");
    }
}

#[tokio::test]
async fn exp_of_the_wrong_type_is_rejected() {
    let app = spawn_app().await;
    for exp in [json!((now() + 3600).to_string()), json!(null), json!(true)] {
        let token = app.token_with(|c| c["exp"] = exp.clone());
        assert_eq!(app.review(&token).await, rejected(V1), "exp {exp}");
    }
}

#[tokio::test]
async fn an_unknown_issuer_is_rejected_without_any_request_to_an_issuer() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    for iss in [
        "https://evil.example.com".to_string(),
        format!("{}/", app.issuer.url()),
        app.issuer.url().replace("https", "http"),
    ] {
        let token = app.token_with(|c| c["iss"] = json!(iss));
        assert_eq!(app.review(&token).await, rejected(V1), "iss {iss}");
    }
    assert_eq!(app.issuer.requests(), before, "no discovery or JWKS request may be made");
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let app = spawn_app().await;
    let payload = B64.encode(app.issuer.claims("alice").to_string());
    for alg in ["none", "None", "NONE"] {
        let header = B64.encode(format!(r#"{{"alg":"{alg}","kid":"rs256-1"}}"#));
        assert_eq!(app.review(&format!("{header}.{payload}.")).await, rejected(V1), "{alg}");
        assert_eq!(app.review(&format!("{header}.{payload}.AAAA")).await, rejected(V1), "{alg}");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_issuers_public_key_is_rejected() {
    let app = spawn_app().await;
    let claims = app.issuer.claims("alice");
    let pem = app.issuer.public_pem("rs256-1").unwrap();
    let jwk = app.issuer.public_jwk("rs256-1").unwrap().to_string();
    for secret in [pem.as_bytes(), jwk.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs256-1".into());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap();
        assert_eq!(app.review(&token).await, rejected(V1));
    }
}

#[tokio::test]
async fn a_token_signed_by_a_key_the_issuer_never_published_is_rejected() {
    let app = spawn_app().await;
    let forged_kid = app.issuer.add_unpublished_key(Algorithm::RS256).unwrap();
    // Same kid as a published key, different private key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rs256-1".into());
    let token = app.issuer.sign_with_header(&forged_kid, &header, &app.issuer.claims("mallory")).unwrap();
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn a_tampered_payload_is_rejected() {
    let app = spawn_app().await;
    let token = app.token("rs256-1", "alice");
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims = app.issuer.claims("alice");
    claims["groups"] = json!(["admins"]);
    parts[1] = B64.encode(claims.to_string());
    assert_eq!(app.review(&parts.join(".")).await, rejected(V1));
}

#[tokio::test]
async fn an_algorithm_outside_the_issuers_list_is_rejected_even_with_a_valid_signature() {
    let app = spawn_app_with(|s| s.jwt[0].algorithms = Some(vec!["RS256".into()])).await;
    assert_eq!(app.review(&app.token("es256-1", "alice")).await, rejected(V1));
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn a_key_reference_in_the_header_is_rejected_and_never_fetched() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rs256-1".into());
    header.jku = Some(format!("{}/keys", app.issuer.url()));
    let token = app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("alice")).unwrap();
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(app.issuer.requests(), before);
}

#[tokio::test]
async fn reserved_names_from_claims_are_rejected() {
    let app = spawn_app().await;
    let group = app.token_with(|c| c["groups"] = json!(["developers", "system:masters"]));
    assert_eq!(app.review(&group).await, rejected(V1));
    let user = app.token_with(|c| c["email"] = json!("system:admin"));
    assert_eq!(app.review(&user).await, rejected(V1));
}

#[tokio::test]
async fn an_unverified_email_is_not_a_username() {
    let app = spawn_app().await;
    for verified in [json!(false), json!("true")] {
        let token = app.token_with(|c| c["email_verified"] = verified.clone());
        assert_eq!(app.review(&token).await, rejected(V1), "email_verified {verified}");
    }
}

#[tokio::test]
async fn garbage_and_empty_tokens_are_rejected_without_error() {
    let app = spawn_app().await;
    for token in ["", "   ", "not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "Bearer abc"] {
        assert_eq!(app.review(token).await, rejected(V1), "{token:?}");
    }
}

#[tokio::test]
async fn a_token_over_the_length_limit_is_rejected_before_decoding() {
    let app = spawn_app_with(|s| s.server.max_token_bytes = 4096).await;
    let mut claims = app.issuer.claims("alice");
    claims["padding"] = json!("x".repeat(5000));
    let token = app.issuer.sign("rs256-1", &claims).unwrap();
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn a_repeated_review_gets_the_same_answer() {
    let app = spawn_app().await;
    let token = app.token("es256-1", "dave");
    let first = app.review(&token).await;
    let second = app.review(&token).await;
    assert_eq!(first, authenticated(V1, "dave"));
    assert_eq!(second, first);
}

#[tokio::test]
async fn a_verbatim_kubernetes_authentication_configuration_is_enforced() {
    for version in ["v1", "v1beta1"] {
        let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
        let ca: String = issuer.ca_pem().lines().map(|l| format!("        {l}\n")).collect();
        let k8s = format!(
            "apiVersion: apiserver.config.k8s.io/{version}\nkind: AuthenticationConfiguration\njwt:\n  - issuer:\n      url: {}\n      audiences: [kubernetes]\n      certificateAuthority: |\n{ca}    claimValidationRules:\n      - claim: hd\n        requiredValue: example.com\n    claimMappings:\n      username: {{claim: sub, prefix: \"k:\"}}\n      groups: {{claim: groups, prefix: \"g:\"}}\n",
            issuer.url()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authn.yaml"), k8s).unwrap();
        let main = dir.path().join("gateway.yaml");
        std::fs::write(&main, "authenticationConfigFile: authn.yaml\nserver:\n  listen: 127.0.0.1:0\n").unwrap();
        let settings = tokenreview_gateway::config::Settings::load(&main).unwrap();
        let app = tokenreview_gateway::startup::Application::build(&settings, Some(main.clone())).await.unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let test_app = TestApp { address, issuer, client: reqwest::Client::new() };

        let with_hd = test_app.token_with(|c| c["hd"] = json!("example.com"));
        assert_eq!(
            test_app.review(&with_hd).await,
            json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": true,
                "user": {"username": "k:alice", "groups": ["g:developers"]}}}),
            "{version}"
        );
        for hd in [json!("example.org"), json!(null)] {
            let token = test_app.token_with(|c| c["hd"] = hd.clone());
            assert_eq!(test_app.review(&token).await, rejected(V1), "{version} hd {hd}");
        }
    }
}

#[tokio::test]
async fn group_rules_rename_and_filter_the_groups_kube_apiserver_sees() {
    let app = spawn_app_with(|s| {
        s.jwt[0].group_rules = Some(tokenreview_gateway::config::GroupRules {
            rename: [("k8s-admins".to_string(), "cluster-admins".to_string())].into(),
            deny: vec!["^tmp-".into()],
            ..Default::default()
        })
    })
    .await;
    let token = app.token_with(|c| c["groups"] = json!(["k8s-admins", "tmp-contractors", "developers"]));
    assert_eq!(app.review(&token).await["status"]["user"]["groups"], json!(["cluster-admins", "oidc:developers"]));
}

#[tokio::test]
async fn cel_mappings_and_rules_from_a_kubernetes_file_are_enforced() {
    let issuer = tokenreview_gateway::dev::DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let ca: String = issuer.ca_pem().lines().map(|l| format!("        {l}\n")).collect();
    let k8s = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: {url}
      audiences: [kubernetes]
      certificateAuthority: |
{ca}    claimValidationRules:
      - expression: "claims.?email_verified.orValue(true) == true"
        message: email not verified
    claimMappings:
      username:
        expression: "'kc:' + claims.email"
      groups:
        expression: "claims.realm_access.roles.map(r, 'kc:' + r)"
      uid:
        expression: "claims.sub"
      extra:
        - key: example.com/tenant
          valueExpression: "claims.?tenant.orValue('')"
    userValidationRules:
      - expression: "!user.groups.exists(g, g == 'kc:banned')"
        message: banned
"#,
        url = issuer.url()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("authn.yaml"), k8s).unwrap();
    let main = dir.path().join("gateway.yaml");
    std::fs::write(&main, "authenticationConfigFile: authn.yaml\nserver:\n  listen: 127.0.0.1:0\n").unwrap();
    let settings = tokenreview_gateway::config::Settings::load(&main).unwrap();
    let app = tokenreview_gateway::startup::Application::build(&settings, None).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let app = TestApp { address, issuer, client: reqwest::Client::new() };

    let token = app.token_with(|c| {
        c["realm_access"] = json!({"roles": ["dev", "ops"]});
        c["tenant"] = json!("t1");
    });
    assert_eq!(
        app.review(&token).await["status"]["user"],
        json!({"username": "kc:alice@example.com", "uid": "alice", "groups": ["kc:dev", "kc:ops"],
            "extra": {"example.com/tenant": ["t1"]}})
    );
    let banned = app.token_with(|c| c["realm_access"] = json!({"roles": ["banned"]}));
    assert_eq!(app.review(&banned).await, rejected(V1), "user rule");
    let unverified = app.token_with(|c| {
        c["realm_access"] = json!({"roles": []});
        c["email_verified"] = json!(false);
    });
    assert_eq!(app.review(&unverified).await, rejected(V1), "claim rule");
    let no_roles = app.token_with(|_| {});
    assert_eq!(app.review(&no_roles).await, rejected(V1), "a missing claim in an expression rejects");
}

#[tokio::test]
async fn a_cached_answer_is_byte_for_byte_the_first_in_either_version() {
    let app = spawn_app().await;
    let token = app.token_with(|c| c["jti"] = json!("cached-1"));
    let send =
        |version| app.post_raw("/authenticate", Some("application/json"), review_body(version, &token).to_string());
    let (status, first_text) = send(V1BETA1).await;
    assert_eq!(status, 200);
    let first: serde_json::Value = serde_json::from_str(&first_text).unwrap();
    assert_eq!(first["apiVersion"], V1BETA1);
    assert_eq!(first["status"]["authenticated"], true);
    assert_eq!(
        first["status"]["user"]["extra"],
        json!({"authentication.kubernetes.io/credential-id": ["JTI=cached-1"]})
    );
    for version in [V1BETA1, V1, V1BETA1] {
        let (status, again) = send(version).await;
        assert_eq!(status, 200);
        let again_value: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(again_value["apiVersion"], version);
        assert_eq!(again_value["status"], first["status"], "{version}");
        let expected = if version == V1 { first_text.replace(V1BETA1, V1) } else { first_text.clone() };
        assert_eq!(again, expected, "the same bytes, in the request's version");
    }
    let (_, metrics) = app.get("/metrics").await;
    assert!(metrics.contains("tokenreview_gateway_cache_requests_total{result=\"hit\"} 3"), "{metrics}");
}

#[tokio::test]
async fn review_gives_the_whole_user_from_a_cache_hit_too() {
    use tokenreview_gateway::authn::Authenticator;
    use tokenreview_gateway::verdict::Outcome;
    let app = spawn_app().await;
    let settings = app.issuer.gateway_settings("127.0.0.1:0");
    let authenticator = Authenticator::new(&settings, std::sync::Arc::new(Default::default())).unwrap();
    tokenreview_gateway::startup::fetch_keys_at_startup(&authenticator, std::time::Duration::from_secs(10)).await;
    let token = app.token_with(|c| c["jti"] = json!("j-7"));
    let first = authenticator.review(&token, &[]).await;
    let hit = authenticator.review(&token, &[]).await;
    assert!(!first.cached && hit.cached);
    let (Outcome::Authenticated(a), Outcome::Authenticated(b)) = (&first.outcome, &hit.outcome) else {
        panic!("{first:?} {hit:?}")
    };
    assert_eq!(a, b);
    assert_eq!(b.groups, vec!["oidc:developers".to_string()]);
}

async fn cache_requests(app: &TestApp) -> (f64, f64) {
    let name = "tokenreview_gateway_cache_requests_total";
    (app.metric(name, &[("result", "hit")]).await, app.metric(name, &[("result", "miss")]).await)
}

/// Sleeps until the wall clock has passed `unix_seconds`.
async fn sleep_past(unix_seconds: u64) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_seconds * 1000 + 100);
    if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn a_cached_answer_is_never_served_past_the_tokens_exp() {
    // The cache keeps entries for up to cache.ttlSeconds (300 s): only the entry's own deadline,
    // the token's exp, can turn this one away.
    let app = spawn_app_with(|s| s.jwt[0].clock_skew_seconds = Some(0)).await;
    let exp = now() + 3;
    let token = app.token_with(|c| c["exp"] = json!(exp));
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    assert_eq!(cache_requests(&app).await, (1.0, 1.0), "the second answer came from the cache");

    sleep_past(exp).await;
    // The cached answer must not be served. (jsonwebtoken counts whole seconds, so the token
    // itself may still verify during its exp second, or not, on a slow machine: either answer.)
    let _ = app.review(&token).await;
    assert_eq!(cache_requests(&app).await, (1.0, 2.0), "the expired entry was a miss");
    sleep_past(exp + 1).await;
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(cache_requests(&app).await, (1.0, 3.0));
}

#[tokio::test]
async fn a_cached_rejection_is_reviewed_again_after_the_negative_cache_ttl() {
    let app = spawn_app_with(|s| s.cache.negative_ttl_seconds = 2).await;
    let token = app.token_with(|c| c["aud"] = json!("vault"));
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(cache_requests(&app).await, (1.0, 1.0));

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(cache_requests(&app).await, (1.0, 2.0), "past negativeTtlSeconds the entry was a miss");
    assert_eq!(app.review(&token).await, rejected(V1));
    assert_eq!(cache_requests(&app).await, (2.0, 2.0), "and the new verdict is cached again");
}
