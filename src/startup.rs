//! Building and running the server: the one place that assembles routes and shared state.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::{AppState, start_authenticator};
// Where callers have always found it; it lives with the rest of the authenticator's lifecycle.
pub use crate::state::fetch_keys_at_startup;

/// A bound, not yet running gateway.
pub struct Application {
    port: u16,
    ops_port: Option<u16>,
    servers: Vec<Server>,
    state: Arc<AppState>,
    grace_seconds: u64,
}

impl Application {
    /// Compiles the settings, fetches every issuer's keys (waiting at most
    /// `keys.startupWaitSeconds`; serving starts either way), starts the background key
    /// refresh, binds the listeners and, with `config_file`, watches it for reloads.
    pub async fn build(settings: &Settings, config_file: Option<PathBuf>) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new());
        let authenticator = start_authenticator(settings, &metrics).await?;
        if let Some(path) = &config_file {
            metrics.config_loaded(&crate::reload::read_all(settings, path));
        }
        let sv = &settings.server;
        let caller_token = match &sv.auth {
            None => None,
            Some(a) => Some(
                std::fs::read_to_string(&a.bearer_token_file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.bearer_token_file))?
                    .trim()
                    .as_bytes()
                    .to_vec(),
            ),
        };
        let state = Arc::new(AppState {
            authenticator: ArcSwap::new(authenticator),
            metrics,
            max_body_bytes: sv.max_body_bytes,
            body_timeout: Duration::from_secs(sv.body_timeout_seconds),
            review_timeout: Duration::from_secs(sv.review_timeout_seconds),
            in_flight: Arc::new(tokio::sync::Semaphore::new(sv.max_in_flight)),
            caller_token,
        });

        let listener =
            TcpListener::bind(&sv.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", sv.listen))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::from(Arc::clone(&state));
        let webhook = {
            let data = data.clone();
            HttpServer::new(move || {
                // NB: two static resources, not one with two patterns: a multi-pattern resource is
                // matched with a regex set on every request (about 15k instructions), a static
                // one by comparing strings.
                let webhook = |path| {
                    web::resource(path)
                        .route(web::post().to(routes::token_review))
                        .default_service(web::to(routes::method_not_allowed))
                };
                App::new()
                    .app_data(data.clone())
                    .service(webhook("/authenticate"))
                    .service(webhook("/"))
                    .configure(ops_routes)
                    .default_service(web::to(routes::not_found))
            })
            .client_request_timeout(Duration::from_secs(5))
            // kube-apiserver's client (Go's transport) keeps idle connections 90 s and does not
            // retry a POST that meets a connection the server just closed: keep ours open longer,
            // so the client always closes first. Workers: one per CPU this process may use
            // (actix's default, which follows taskset and cgroup limits).
            .keep_alive(Duration::from_secs(120))
            .shutdown_timeout(sv.shutdown_grace_seconds)
            // Signals are handled in src/shutdown.rs: actix's own SIGINT drops reviews in flight.
            .disable_signals()
        };
        let webhook = match &sv.tls {
            None => webhook.listen(listener)?,
            Some(tls) => {
                let (config, cert) = crate::tls::server_config(tls).map_err(anyhow::Error::msg)?;
                crate::tls::watch_certificate(&cert, tls);
                webhook.listen_rustls_0_23(listener, config)?
            }
        };
        let mut servers = vec![webhook.run()];

        let mut ops_port = None;
        if let Some(addr) = &sv.ops_listen {
            let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            ops_port = Some(listener.local_addr()?.port());
            let ops = HttpServer::new(move || {
                App::new().app_data(data.clone()).configure(ops_routes).default_service(web::to(routes::not_found))
            })
            .workers(1)
            .shutdown_timeout(sv.shutdown_grace_seconds)
            .disable_signals()
            .listen(listener)?
            .run();
            servers.push(ops);
        }
        if let Some(path) = config_file {
            crate::reload::watch(Arc::clone(&state), path, settings.clone());
        }
        Ok(Application { port, ops_port, servers, state, grace_seconds: sv.shutdown_grace_seconds })
    }

    /// The bound webhook port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bound ops port, when `server.opsListen` is set.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops_port
    }

    /// Handles to stop the servers.
    pub fn handles(&self) -> Vec<ServerHandle> {
        self.servers.iter().map(Server::handle).collect()
    }

    /// The shared state (the active authenticator, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until stopped: SIGTERM/SIGINT stop accepting and let in-flight requests finish
    /// within `server.shutdownGraceSeconds` (see [`crate::shutdown`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let signals = tokio::spawn(crate::shutdown::stop_on_signals(self.handles(), self.grace_seconds));
        let stopped = futures_util::future::try_join_all(self.servers).await.map(|_| ());
        signals.abort();
        stopped
    }
}

fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(routes::healthz))
        .route("/livez", web::get().to(routes::healthz))
        .route("/readyz", web::get().to(routes::readyz))
        .route("/metrics", web::get().to(routes::metrics));
}
