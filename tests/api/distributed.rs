//! Distributed claims (OpenID Connect Core 5.6.2) as kube-apiserver resolves them: the claim a
//! mapping uses, held by a claims source the token points at, fetched from the issuer's own
//! host, verified as a JWT of the same issuer.

use serde_json::{Value, json};

use crate::attack_kit::Tripwire;
use crate::helpers::*;

const ACCESS_TOKEN: &str = "claims-source-access-token";

/// A token for alice whose groups live at `endpoint` (not in the token).
fn thin_token(app: &TestApp, endpoint: &str) -> String {
    app.token_with(|c| {
        c.as_object_mut().unwrap().remove("groups");
        c["_claim_names"] = json!({"groups": "src1"});
        c["_claim_sources"] = json!({"src1": {"endpoint": endpoint, "access_token": ACCESS_TOKEN}});
    })
}

/// The answer of a claims source: a JWT of the issuer holding `groups`, edited by `edit`.
fn source_answer(app: &TestApp, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = app.issuer.claims("alice");
    claims["groups"] = json!(["developers"]);
    edit(&mut claims);
    app.issuer.sign("es256-1", &claims).unwrap()
}

fn is_transient(answer: &Value) -> bool {
    answer["status"]["authenticated"] == false && answer["status"]["error"].is_string()
}

#[tokio::test]
async fn a_distributed_groups_claim_is_fetched_verified_and_mapped_once() {
    let app = spawn_app().await;
    app.issuer.set_claim_source("src1", ACCESS_TOKEN, &source_answer(&app, |_| {}));
    let token = thin_token(&app, &format!("{}/claims/src1", app.issuer.url()));
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"), "from the result cache");
    assert_eq!(app.issuer.claim_source_requests(), 1);

    // A claim in the token itself wins: no fetch.
    let both = app.token_with(|c| {
        c["_claim_names"] = json!({"groups": "src1"});
        c["_claim_sources"] = json!({"src1": {"endpoint": format!("{}/claims/src1", app.issuer.url())}});
    });
    assert_eq!(app.review(&both).await, authenticated(V1, "alice"));
    assert_eq!(app.issuer.claim_source_requests(), 1);
}

#[tokio::test]
async fn a_claims_source_off_the_issuers_hosts_is_never_called() {
    let app = spawn_app().await;
    let tripwire = Tripwire::new();
    let before = app.issuer.requests();
    // Another host (the issuer is 127.0.0.1; the port alone does not make another host).
    let elsewhere = tripwire.url("/claims/src1").replace("127.0.0.1", "localhost");
    let mut tokens =
        vec![thin_token(&app, &elsewhere), thin_token(&app, "http://169.254.169.254/latest/meta-data/iam")];
    // http on the issuer's own host and port, and credentials in the URL, are refused too.
    let port = app.issuer.url().rsplit(':').next().unwrap().to_string();
    tokens.push(thin_token(&app, &format!("http://127.0.0.1:{port}/claims/src1")));
    tokens.push(thin_token(&app, &format!("https://user:pw@127.0.0.1:{port}/claims/src1")));
    app.all_refused_because(true, "distributed_claim_invalid", &tokens).await;
    tripwire.assert_untouched(&app, before).await;
}

#[tokio::test]
async fn a_failed_claims_fetch_is_transient_and_a_bad_answer_is_a_rejection() {
    let app = spawn_app().await;
    let url = |name: &str| format!("{}/claims/{name}", app.issuer.url());
    // Nothing served under that name: HTTP 404.
    let answer = app.review(&thin_token(&app, &url("src1"))).await;
    assert!(is_transient(&answer), "{answer}");

    let now = now();
    let cases: Vec<(&str, String)> = vec![
        ("lacks-claim", source_answer(&app, |c| drop(c.as_object_mut().unwrap().remove("groups")))),
        ("wrong-aud", source_answer(&app, |c| c["aud"] = json!("someone-else"))),
        ("expired", source_answer(&app, |c| c["exp"] = json!(now - 3600))),
        ("other-issuer", source_answer(&app, |c| c["iss"] = json!("https://other.example.com"))),
        ("not-a-jwt", "{\"groups\": [\"system:masters\"]}".to_string()),
    ];
    let mut tokens = Vec::new();
    for (name, answer) in &cases {
        app.issuer.set_claim_source(name, ACCESS_TOKEN, answer);
        tokens.push(app.token_with(|c| {
            c.as_object_mut().unwrap().remove("groups");
            c["_claim_names"] = json!({"groups": "s"});
            c["_claim_sources"] = json!({"s": {"endpoint": url(name), "access_token": ACCESS_TOKEN}});
        }));
    }
    // A name that points at no source.
    tokens.push(app.token_with(|c| {
        c.as_object_mut().unwrap().remove("groups");
        c["_claim_names"] = json!({"groups": "missing"});
        c["_claim_sources"] = json!({});
    }));
    app.all_refused_because(true, "distributed_claim_invalid", &tokens).await;
}

/// A token for alice whose `email` (the username claim) lives at the source `name`.
fn distributed_email_token(app: &TestApp, name: &str) -> String {
    app.token_with(|c| {
        c.as_object_mut().unwrap().remove("email");
        c["_claim_names"] = json!({"email": "e"});
        c["_claim_sources"] =
            json!({"e": {"endpoint": format!("{}/claims/{name}", app.issuer.url()), "access_token": ACCESS_TOKEN}});
    })
}

#[tokio::test]
async fn a_distributed_username_claim_is_missing_as_in_kube_apiserver() {
    // kube-apiserver resolves only the groups claim; a username it would not fetch is missing.
    let app = spawn_app().await;
    let answer = source_answer(&app, |c| c["email"] = json!("alice@example.com"));
    app.issuer.set_claim_source("emails", ACCESS_TOKEN, &answer);
    let token = distributed_email_token(&app, "emails");
    app.all_refused_because(true, "username_claim_missing", &[token]).await;
    assert_eq!(app.issuer.claim_source_requests(), 0);
}

#[tokio::test]
async fn a_distributed_unverified_email_is_not_authenticated() {
    // The token says email_verified: true; the answer holds another, unverified email. Taking the
    // email from the answer and email_verified from the token would authenticate it.
    let app = spawn_app().await;
    let answer = source_answer(&app, |c| {
        c["email"] = json!("admin@example.com");
        c["email_verified"] = json!(false);
    });
    app.issuer.set_claim_source("unverified", ACCESS_TOKEN, &answer);
    let token = distributed_email_token(&app, "unverified");
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn an_answer_signed_with_a_key_rotated_in_since_the_last_fetch_is_accepted() {
    // The keys were fetched at start; the issuer then rotates a key in and signs the answer with
    // it. As for a token's own kid, the gateway fetches the keys again before calling it unknown.
    let app = spawn_app().await;
    let rotated = app.issuer.add_key(jsonwebtoken::Algorithm::ES256).unwrap();
    let mut claims = app.issuer.claims("alice");
    claims["groups"] = json!(["developers"]);
    app.issuer.set_claim_source("src1", ACCESS_TOKEN, &app.issuer.sign(&rotated, &claims).unwrap());
    let jwks_before = app.issuer.jwks_requests();
    let token = thin_token(&app, &format!("{}/claims/src1", app.issuer.url()));
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    assert_eq!(app.issuer.jwks_requests(), jwks_before + 1);
}
