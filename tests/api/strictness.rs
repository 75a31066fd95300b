//! Where the gateway is stricter than kube-apiserver's own JWT authenticator, or opt-in
//! stricter per issuer (README, "Deliberate differences").

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_empty_group_rejects_the_token_instead_of_granting_the_bare_prefix() {
    let app = spawn_app().await;
    let tokens: Vec<String> = [json!(""), json!(["developers", ""])]
        .into_iter()
        .map(|groups| app.token_with(|c| c["groups"] = groups))
        .collect();
    app.all_refused_because(true, "invalid_groups", &tokens).await;
    assert_eq!(app.review(&app.token_with(|c| c["groups"] = json!(["developers"]))).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn header_types_pin_an_issuer_to_one_kind_of_token() {
    // RFC 9068 access tokens only; the issuer's ID tokens (typ JWT) share the key.
    let app = spawn_app_with(|s| s.jwt[0].header_types = Some(vec!["at+jwt".into()])).await;
    let with_typ = |typ: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("rs256-1".into());
        header.typ = typ.map(str::to_string);
        app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("alice")).unwrap()
    };
    assert_eq!(app.review(&with_typ(Some("at+jwt"))).await, authenticated(V1, "alice"));
    assert_eq!(app.review(&with_typ(Some("application/AT+JWT"))).await, authenticated(V1, "alice"));
    let refused = [with_typ(Some("JWT")), with_typ(None), with_typ(Some("dpop+jwt"))];
    app.all_refused_because(true, "type_not_allowed", &refused).await;
}

#[tokio::test]
async fn a_maximum_lifetime_refuses_longer_lived_tokens_and_tokens_without_iat() {
    let app = spawn_app_with(|s| s.jwt[0].max_lifetime_seconds = Some(3600)).await;
    // The dev issuer's tokens live exactly an hour.
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
    let long = app.token_with(|c| c["exp"] = json!(c["iat"].as_u64().unwrap() + 3601));
    app.all_refused_because(true, "lifetime_too_long", &[long]).await;
    // An hour long, but issued five years from now: it would be valid for five years.
    let future = app.token_with(|c| {
        let iat = c["iat"].as_u64().unwrap() + 5 * 365 * 86400;
        c["iat"] = json!(iat);
        c["exp"] = json!(iat + 3600);
    });
    app.all_refused_because(true, "lifetime_too_long", &[future]).await;
    let no_iat = app.token_with(|c| drop(c.as_object_mut().unwrap().remove("iat")));
    app.all_refused_because(true, "missing_iat", &[no_iat]).await;
    let unpinned = spawn_app().await;
    let long = unpinned.token_with(|c| c["exp"] = json!(c["iat"].as_u64().unwrap() + 7 * 86400));
    assert_eq!(unpinned.review(&long).await, authenticated(V1, "alice"), "opt-in: no limit by default");
}
