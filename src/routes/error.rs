//! Fixed error bodies, and the fallbacks for unknown paths and methods.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

/// A 4xx/5xx with a short JSON body that never echoes the request.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": code, "message": message }))
}

/// Fallback for unknown paths.
pub async fn not_found() -> HttpResponse {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint; POST a TokenReview to /authenticate")
}

/// Fallback for known paths with the wrong method.
pub async fn method_not_allowed() -> HttpResponse {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not support that method")
}
