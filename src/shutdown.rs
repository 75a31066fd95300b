//! Stopping on a signal. actix-server's own handlers drain on SIGTERM but drop every connection
//! at once on SIGINT, so Ctrl-C in front of `serve` or `dev` cut reviews in flight. The servers
//! are built with their signal handling off and this module drives them instead: SIGTERM and
//! SIGINT both stop accepting and let reviews in flight finish within
//! `server.shutdownGraceSeconds`; a second SIGINT (Ctrl-C again), or SIGQUIT, stops at once.

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{SignalKind, signal};

/// Waits for a stop signal and stops `servers` accordingly; returns once a stop was requested
/// (the servers' own futures finish when they have stopped). Meant to be spawned beside them.
pub async fn stop_on_signals(servers: Vec<ServerHandle>, grace_seconds: u64) {
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit()))
    else {
        // Without handlers the default dispositions stay: the process dies on a signal, as a
        // process that never drained would. Nothing better is possible; say so.
        tracing::error!("cannot install the signal handlers: SIGTERM and SIGINT will not drain");
        return;
    };
    let graceful = tokio::select! {
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
        _ = quit.recv() => None,
    };
    if let Some(name) = graceful {
        tracing::info!(
            "{name} received: no new connections; reviews in flight get up to {grace_seconds} s to finish \
             (send SIGINT again, e.g. Ctrl-C, to stop at once)"
        );
        for server in &servers {
            // `stop` sends the command when called; its future only reports completion.
            drop(server.stop(true));
        }
        tokio::select! {
            _ = int.recv() => {}
            _ = quit.recv() => {}
        }
    }
    tracing::warn!("stopping at once: connections still open are closed");
    for server in &servers {
        drop(server.stop(false));
    }
}
