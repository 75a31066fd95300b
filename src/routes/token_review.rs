//! `POST /authenticate` (and `POST /`): the webhook itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::error::error_response;
use crate::audit::ReviewLine;
use crate::fingerprint::Fingerprint;
use crate::metrics::ReviewLabels;
use crate::review::{ReviewRequest, ReviewResponse};
use crate::state::AppState;
use crate::verdict::{Outcome, Reviewed, Unavailable, Verdict};

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Reads a TokenReview, reviews its token, answers in the request's version.
pub async fn token_review(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let request_id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    if let Some(expected) = &state.caller_token
        && !caller_token_matches(&req, expected)
    {
        tracing::warn!(request_id, "refused a caller without the configured bearer token");
        return error_response(StatusCode::UNAUTHORIZED, "unauthorized", "a valid caller bearer token is required");
    }
    if !is_json(&req) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let body = match tokio::time::timeout(state.body_timeout, read_body(&req, payload, state.max_body_bytes)).await {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("request body exceeds the limit of {} bytes", state.max_body_bytes),
            );
        }
        Ok(Err(BodyError::Read)) => {
            return error_response(StatusCode::BAD_REQUEST, "unreadable_body", "request body could not be read");
        }
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "request body was not received in time",
            );
        }
    };
    let started = Instant::now();
    let review = match ReviewRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(request_id, error = e.code(), "refused a request that is not a TokenReview");
            return error_response(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
        }
    };
    let unavailable = |why| Reviewed {
        verdict: Verdict::unavailable(why),
        answer: None,
        fingerprint: Fingerprint::of(review.token.expose()),
    };
    let reviewed = match state.in_flight.try_acquire() {
        // Saturated: answer at once with a transient error, which kube-apiserver neither caches
        // nor retries (429/5xx would be retried five times).
        Err(_) => unavailable(Unavailable::Busy),
        Ok(_permit) => {
            // NB: `load`, not `load_full`: no shared reference count is written per request
            // (that cache line would bounce between the workers' cores).
            let authenticator = state.authenticator.load();
            let review = authenticator.review_ready(review.token.expose(), &review.audiences);
            tokio::time::timeout(state.review_timeout, review)
                .await
                .unwrap_or_else(|_| unavailable(Unavailable::Timeout))
        }
    };
    let verdict = &reviewed.verdict;
    let elapsed = started.elapsed();
    let issuer = verdict.issuer.as_deref().unwrap_or("");
    let (result, reason) = (verdict.outcome.result_label(), verdict.outcome.reason_label());
    state.metrics.review_duration.observe(elapsed.as_secs_f64());
    let labels = ReviewLabels { issuer: verdict.issuer.clone(), result, reason };
    state.metrics.reviews.get_or_create(&labels).inc();
    let username = match &verdict.outcome {
        Outcome::Authenticated(u) => u.username.as_str(),
        _ => "",
    };
    ReviewLine {
        request_id,
        token: reviewed.fingerprint,
        issuer,
        result,
        reason,
        user: username,
        cached: verdict.cached,
        api_version: review.api_version.as_str(),
        micros: elapsed.as_micros() as u64,
    }
    .log();
    match &reviewed.answer {
        Some(answer) => HttpResponse::Ok().content_type(ContentType::json()).body(answer.body(review.api_version)),
        None => HttpResponse::Ok().json(ReviewResponse::new(review.api_version, verdict.outcome.status())),
    }
}

/// `Authorization: Bearer <token>` equal to the configured one, compared in constant time.
fn caller_token_matches(req: &HttpRequest, expected: &[u8]) -> bool {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), expected).is_ok()
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
