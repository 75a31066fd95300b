//! Building and running the server: the one place that assembles routes and shared state.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};

use crate::authn::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::routes;

/// What every handler shares.
pub struct AppState {
    /// The reviewer.
    pub authenticator: Arc<Authenticator>,
    /// `server.maxBodyBytes`.
    pub max_body_bytes: usize,
}

/// A bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    authenticator: Arc<Authenticator>,
}

impl Application {
    /// Compiles the settings, fetches every issuer's keys (waiting at most
    /// `keys.startupWaitSeconds`; serving starts either way), starts the background key
    /// refresh and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new());
        let authenticator = Arc::new(Authenticator::new(settings, metrics).map_err(anyhow::Error::msg)?);
        fetch_keys_at_startup(&authenticator, Duration::from_secs(settings.keys.startup_wait_seconds)).await;
        spawn_key_refresh(&authenticator);

        let listener = TcpListener::bind(&settings.server.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            authenticator: Arc::clone(&authenticator),
            max_body_bytes: settings.server.max_body_bytes,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(
                    web::resource(["/authenticate", "/"])
                        .route(web::post().to(routes::token_review))
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .route("/healthz", web::get().to(routes::healthz))
                .route("/livez", web::get().to(routes::healthz))
                .route("/readyz", web::get().to(routes::readyz))
                .route("/metrics", web::get().to(routes::metrics))
                .default_service(web::to(routes::not_found))
        })
        .client_request_timeout(Duration::from_secs(5))
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application { port, server, authenticator })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The reviewer this server uses.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// Serves until stopped (SIGTERM/SIGINT drain in-flight requests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
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
/// jitter), fetches, repeats. It holds only a weak reference, so it ends with its authenticator.
fn spawn_key_refresh(authenticator: &Authenticator) {
    for issuer in authenticator.issuers() {
        let keys = Arc::downgrade(&issuer.keys);
        tokio::spawn(async move {
            loop {
                let Some(wait) = keys.upgrade().map(|k| k.next_refresh_in()) else { return };
                tokio::time::sleep(wait).await;
                let Some(k) = keys.upgrade() else { return };
                let _ = k.refresh().await;
            }
        });
    }
}
