//! `POST /authenticate` (and `POST /`): the webhook itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::error_response;
use crate::authn::{Outcome, token_fingerprint};
use crate::review::{ReviewRequest, ReviewResponse};
use crate::startup::AppState;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Reads a TokenReview, reviews its token, answers in the request's version.
pub async fn token_review(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let request_id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    if !is_json(&req) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let body = match read_body(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("request body exceeds the limit of {} bytes", state.max_body_bytes),
            );
        }
        Err(BodyError::Read) => {
            return error_response(StatusCode::BAD_REQUEST, "unreadable_body", "request body could not be read");
        }
    };
    let review = match ReviewRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(request_id, error = e.code(), "refused a request that is not a TokenReview");
            return error_response(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
        }
    };
    let verdict = state.authenticator.review(&review.token, &review.audiences).await;
    let username = match &verdict.outcome {
        Outcome::Authenticated(u) => u.username.as_str(),
        _ => "",
    };
    tracing::info!(
        request_id,
        token = %token_fingerprint(&review.token),
        issuer = verdict.issuer.as_deref().unwrap_or(""),
        result = verdict.outcome.result_label(),
        reason = verdict.outcome.reason_label(),
        user = %username.escape_debug(),
        cached = verdict.cached,
        api_version = review.api_version.as_str(),
        micros = started.elapsed().as_micros() as u64,
        "token review"
    );
    HttpResponse::Ok().json(ReviewResponse::new(review.api_version, verdict.outcome.status()))
}

/// `application/json`, optionally with `charset=utf-8`; JSON in any other charset is refused.
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let essence_ok = parts.next().is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    essence_ok
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

enum BodyError {
    TooLarge,
    Read,
}

/// Reads the body with a hard cap, refusing early on a declared length over the limit.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, BodyError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
