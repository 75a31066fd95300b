//! Configuration reload: on a change of the file's content (checked every few seconds, which
//! also catches Kubernetes' `..data` symlink swaps) or on SIGHUP, the new file is loaded,
//! validated and compiled, its issuers' keys fetched within the startup wait, and only then
//! swapped in whole. An invalid file is logged and the running configuration stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::metrics::ResultLabels;
use crate::startup::{AppState, start_authenticator};

/// How often the file's content is compared with the active one.
const POLL: Duration = Duration::from_secs(2);

/// Starts the reload loop for `path`, whose content produced `active`.
pub fn watch(state: Arc<AppState>, path: PathBuf, active: Settings) {
    tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = std::fs::read(&path).ok();
        let mut active = active;
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let content = std::fs::read(&path).ok();
            if !forced && content == last {
                continue;
            }
            last = content.clone();
            match reload(&state, &path, &active).await {
                Ok(settings) => {
                    active = settings;
                    state.metrics.config_loaded(&content.unwrap_or_default());
                    state.metrics.config_reloads.get_or_create(&ResultLabels { result: "success".into() }).inc();
                    tracing::info!(path = %path.display(), "configuration reloaded");
                }
                Err(e) => {
                    state.metrics.config_reloads.get_or_create(&ResultLabels { result: "failure".into() }).inc();
                    tracing::error!(path = %path.display(), error = %e, "configuration not reloaded; the running one stays");
                }
            }
        }
    });
}

async fn reload(state: &AppState, path: &std::path::Path, active: &Settings) -> Result<Settings, String> {
    let settings = Settings::load(path).map_err(|e| e.to_string())?;
    if format!("{:?}", settings.server) != format!("{:?}", active.server) {
        tracing::warn!("server settings changed; they take effect at the next restart");
    }
    let authenticator = start_authenticator(&settings, &state.metrics).await.map_err(|e| e.to_string())?;
    state.authenticator.store(authenticator);
    Ok(settings)
}
