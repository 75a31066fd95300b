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
