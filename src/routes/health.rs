//! Liveness and readiness.

use actix_web::{HttpResponse, web};

use crate::authn::keys::KeyHealth;
use crate::state::AppState;

/// `/healthz` and `/livez`: the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// `/readyz`: every configured issuer has fresh signing keys. The body names those that do not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let authenticator = state.authenticator.load();
    let mut problems: Vec<String> = authenticator
        .issuers()
        .filter_map(|i| match i.keys.health() {
            KeyHealth::Ready(_) => None,
            KeyHealth::Missing(e) => Some(format!("issuer {} has no signing keys{}", i.url, because(e))),
            KeyHealth::Stale(e) => {
                Some(format!("issuer {} has only stale signing keys (too long without a fetch){}", i.url, because(e)))
            }
        })
        .collect();
    if problems.is_empty() {
        return HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n");
    }
    problems.sort();
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body(format!("not ready:\n{}\n", problems.join("\n")))
}

fn because(error: Option<String>) -> String {
    error.map(|e| format!(": {e}")).unwrap_or_else(|| " yet".to_string())
}

/// `/metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    for issuer in state.authenticator.load().issuers() {
        issuer.keys.observe();
    }
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(state.metrics.render())
}
