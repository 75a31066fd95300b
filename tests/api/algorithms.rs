//! Every signature algorithm, end to end: a real gateway, a real HTTPS issuer publishing one key
//! per algorithm, and tokens signed by an independent signer where one exists (jsonwebtoken, as
//! the attack suite's `Forger`, for the RSA and P-256/P-384 algorithms) and by the crate's aws-lc-rs signer for ES512 and EdDSA,
//! which jsonwebtoken cannot sign. What kube-apiserver's JWT authenticator accepts (nine
//! algorithms, ES512 among them) is accepted by default; EdDSA only when configured.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenreview_gateway::authn::jws::Alg;
use tokenreview_gateway::authn::sign::SigningKey;
use tokenreview_gateway::config::Settings;
use tokenreview_gateway::dev::DevIssuer;

use crate::attack_kit::Forger;
use crate::helpers::*;

/// Signs claims under a header (its `kid`, when it has one, replaces the key's own).
type Sign = Box<dyn Fn(&Value, &Value) -> String + Send + Sync>;

/// A private key of the test, for one algorithm, whose public half the issuer publishes.
struct Key {
    alg: Alg,
    kid: String,
    sign: Sign,
    jwk: Value,
}

fn key(alg: Alg) -> Key {
    let kid = format!("{}-k", alg.name().to_lowercase());
    // jsonwebtoken signs all but ES512 and (with rcgen's Ed25519 keys) EdDSA.
    let theirs = alg.name().parse::<Algorithm>().ok().filter(|_| !matches!(alg, Alg::ES512 | Alg::EdDSA));
    let (sign, mut jwk): (Sign, Value) = match theirs {
        Some(a) => {
            let forger = Forger::new(a, &kid);
            let jwk = forger.jwk.clone();
            let sign = move |header: &Value, claims: &Value| {
                let kid = header.get("kid").cloned().unwrap_or_else(|| json!(forger.kid));
                let header = json!({"alg": format!("{a:?}"), "typ": "JWT", "kid": kid}).to_string();
                forger.sign_bytes(header.as_bytes(), claims.to_string().as_bytes())
            };
            (Box::new(sign), jwk)
        }
        None => {
            let signer = SigningKey::generate(alg).unwrap();
            let jwk = signer.public_jwk();
            let kid = kid.clone();
            let sign = move |header: &Value, claims: &Value| {
                let mut h = header.clone();
                if h.get("kid").is_none() {
                    h["kid"] = json!(kid);
                }
                signer.sign(&h, &claims.to_string()).unwrap()
            };
            (Box::new(sign), jwk)
        }
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    Key { alg, kid, sign, jwk }
}

/// A gateway with the default `algorithms` (the dev issuer's settings name three) trusting an
/// issuer that publishes `keys`.
async fn app_with(keys: &[Key], configure: impl FnOnce(&mut Settings)) -> TestApp {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.expect("dev issuer starts");
    for k in keys {
        issuer.publish_raw(k.jwk.clone());
    }
    spawn_gateway(issuer, |s| {
        s.jwt[0].algorithms = None;
        configure(s)
    })
    .await
}

#[tokio::test]
async fn every_algorithm_kube_apiserver_accepts_is_accepted_by_default_and_eddsa_when_configured() {
    let keys: Vec<Key> = Alg::ASYMMETRIC.into_iter().map(key).collect();
    let app = app_with(&keys, |_| {}).await;
    for k in keys.iter().filter(|k| k.alg != Alg::EdDSA) {
        let token = (k.sign)(&json!({}), &app.issuer.claims("carol"));
        assert_eq!(app.review(&token).await, authenticated(V1, "carol"), "{}", k.alg);
    }
    let eddsa = keys.iter().find(|k| k.alg == Alg::EdDSA).unwrap();
    let token = (eddsa.sign)(&json!({}), &app.issuer.claims("carol"));
    app.all_refused_because(true, "algorithm_not_allowed", &[token]).await;

    let all: Vec<String> = Alg::ASYMMETRIC.iter().map(|a| a.name().to_string()).collect();
    let opted_in = app_with(&keys, |s| s.jwt[0].algorithms = Some(all)).await;
    for k in &keys {
        let token = (k.sign)(&json!({}), &opted_in.issuer.claims("dave"));
        assert_eq!(opted_in.review(&token).await, authenticated(V1, "dave"), "{}", k.alg);
    }
}

#[tokio::test]
async fn an_es512_token_is_checked_like_any_other() {
    let keys = [key(Alg::ES512), key(Alg::ES384)];
    let app = app_with(&keys, |_| {}).await;
    let es512 = &keys[0];
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = app.issuer.claims("erin");
        edit(&mut c);
        c
    };
    let good = (es512.sign)(&json!({}), &claims(&|_| {}));
    assert_eq!(app.review(&good).await, authenticated(V1, "erin"));
    // Signed by a P-521 key the issuer does not publish, under the published kid.
    let stranger = key(Alg::ES512);
    let forged = (stranger.sign)(&json!({"kid": es512.kid}), &claims(&|_| {}));
    app.all_refused_because(true, "bad_signature", &[forged]).await;
    // An ES512 signature naming the issuer's P-384 key: that key cannot verify ES512.
    let mislabelled = (es512.sign)(&json!({"kid": "es384-k"}), &claims(&|_| {}));
    app.all_refused_because(true, "no_matching_key", &[mislabelled]).await;
    let expired = (es512.sign)(&json!({}), &claims(&|c| c["exp"] = json!(now() - 3600)));
    app.all_refused_because(true, "expired", &[expired]).await;
    let elsewhere = (es512.sign)(&json!({}), &claims(&|c| c["aud"] = json!("another-cluster")));
    app.all_refused_because(true, "wrong_audience", &[elsewhere]).await;
}

#[tokio::test]
async fn a_jwk_bound_to_one_algorithm_verifies_only_that_one() {
    // One RSA key published with `alg: RS256`; the same key signing PS256 and RS512 is refused.
    let issuer = DevIssuer::start(&[Algorithm::ES256]).await.expect("dev issuer starts");
    let signer = SigningKey::generate(Alg::RS256).unwrap();
    let mut jwk = signer.public_jwk();
    jwk["kid"] = json!("bound");
    jwk["alg"] = json!("RS256");
    issuer.publish_raw(jwk);
    let app = spawn_gateway(issuer, |s| s.jwt[0].algorithms = None).await;
    let claims = app.issuer.claims("frank").to_string();
    let header = json!({"kid": "bound"});
    let good = signer.sign(&header, &claims).unwrap();
    assert_eq!(app.review(&good).await, authenticated(V1, "frank"));
    let refused: Vec<String> = [Alg::PS256, Alg::RS512]
        .into_iter()
        .map(|alg| SigningKey::with_rsa_alg(alg, &signer).unwrap().sign(&header, &claims).unwrap())
        .collect();
    app.all_refused_because(true, "no_matching_key", &refused).await;
}
