//! Liveness and readiness.

use actix_web::{HttpResponse, web};

use crate::startup::AppState;

/// `/healthz` and `/livez`: the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// `/readyz`: every configured issuer has signing keys. The body names those that do not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut missing: Vec<String> = state
        .authenticator
        .issuers()
        .filter(|i| i.keys.current().is_none())
        .map(|i| match i.keys.last_error() {
            Some(e) => format!("issuer {} has no signing keys: {e}", i.url),
            None => format!("issuer {} has no signing keys yet", i.url),
        })
        .collect();
    if missing.is_empty() {
        return HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n");
    }
    missing.sort();
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body(format!("not ready:\n{}\n", missing.join("\n")))
}
