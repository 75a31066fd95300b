//! Configuration reload: on a change of the file's content (checked every few seconds, which
//! also catches Kubernetes' `..data` symlink swaps) or on SIGHUP, the new file is loaded,
//! validated and compiled, its issuers' keys fetched within the startup wait, and only then
//! swapped in whole. An invalid file is logged and the running configuration stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::metrics::ResultLabels;
use crate::state::{AppState, start_authenticator};

/// How often the file's content is compared with the active one.
const POLL: Duration = Duration::from_secs(2);

/// Starts the reload loop for `path`, whose content produced `active`.
pub fn watch(state: Arc<AppState>, path: PathBuf, active: Settings) {
    tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut active = active;
        let mut last = read_all(&active, &path);
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let content = read_all(&active, &path);
            if !forced && content == last {
                continue;
            }
            last = content.clone();
            match reload(&state, &path, &active).await {
                Ok(settings) => {
                    active = settings;
                    last = read_all(&active, &path);
                    state.metrics.config_loaded(&content);
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

/// The content of every file the configuration came from (the main file, and the Kubernetes
/// file it names), so a change in either is noticed.
pub(crate) fn read_all(active: &Settings, path: &std::path::Path) -> Vec<u8> {
    let mut files = active.sources.files.clone();
    if files.is_empty() {
        files.push(path.to_path_buf());
    }
    files.iter().flat_map(|f| std::fs::read(f).unwrap_or_default()).collect()
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
