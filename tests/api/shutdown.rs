//! Stopping `serve`: SIGINT (Ctrl-C) drains like SIGTERM.

use crate::cli::a_review_in_flight_is_answered_after;

#[tokio::test]
async fn sigint_lets_reviews_in_flight_finish_like_sigterm() {
    a_review_in_flight_is_answered_after("-INT").await;
}
