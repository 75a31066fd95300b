//! What the handlers share, and how an authenticator is brought up: compiled, its keys fetched
//! within the startup wait, its refresh started. Used by startup, by reload (which swaps in a
//! new authenticator) and by the routes.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::authn::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;

/// What every handler shares. The authenticator is swapped whole on a configuration reload;
/// a request keeps the one it started with.
pub struct AppState {
    /// The reviewer of the active configuration.
    pub authenticator: ArcSwap<Authenticator>,
    /// Metrics, kept across reloads.
    pub metrics: Arc<Metrics>,
    /// `server.maxBodyBytes`.
    pub max_body_bytes: usize,
    /// `server.bodyTimeoutSeconds`.
    pub body_timeout: Duration,
    /// `server.reviewTimeoutSeconds`.
    pub review_timeout: Duration,
    /// `server.maxInFlight` permits.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The bearer token callers must present, from `server.auth.bearerTokenFile`.
    pub caller_token: Option<Vec<u8>>,
}

/// Compiles an authenticator, fetches its keys with the startup wait and starts its refresh.
pub async fn start_authenticator(settings: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Authenticator>> {
    let authenticator = Arc::new(Authenticator::new(settings, Arc::clone(metrics)).map_err(anyhow::Error::msg)?);
    fetch_keys_at_startup(&authenticator, Duration::from_secs(settings.keys.startup_wait_seconds)).await;
    spawn_key_refresh(&authenticator);
    Ok(authenticator)
}

/// Fetches all issuers concurrently. The fetches are spawned, so the bounded wait never
/// cancels one: a slow issuer keeps trying after serving starts.
pub async fn fetch_keys_at_startup(authenticator: &Authenticator, wait: Duration) {
    let tasks: Vec<_> = authenticator
        .issuers()
        .map(|issuer| {
            let keys = Arc::clone(&issuer.keys);
            tokio::spawn(async move { keys.initial_fetch().await })
        })
        .collect();
    let _ = tokio::time::timeout(wait, futures_util::future::join_all(tasks)).await;
}

/// One scheduler per issuer: sleeps until the store's next refresh (max-age or backoff, with
/// jitter), fetches, repeats. It holds only a weak reference, so it ends with its authenticator
/// (after a reload, the old one's schedulers stop by themselves).
fn spawn_key_refresh(authenticator: &Authenticator) {
    for issuer in authenticator.issuers() {
        let keys = Arc::downgrade(&issuer.keys);
        tokio::spawn(async move {
            // The schedule starts from the outcome of the first fetch (this one, or the startup
            // or token-triggered one it joins).
            let Some(k) = keys.upgrade() else { return };
            k.initial_fetch().await;
            drop(k);
            loop {
                let Some(wait) = keys.upgrade().map(|k| k.next_refresh_in()) else { return };
                tokio::time::sleep(wait).await;
                let Some(k) = keys.upgrade() else { return };
                let _ = k.refresh().await;
            }
        });
    }
}
