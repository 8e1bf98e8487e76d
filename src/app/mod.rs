//! The application: load rules, start the scheduler and the HTTP server, reload, `--once`, stop
//! cleanly. The top of the data path: it wires every other step together and nothing depends on it.
//!
//! - [`exporter`]: the running exporter, what reload and shutdown act on.
//! - [`reload`]: the one reload path, whatever triggers it (SIGHUP, `POST /-/reload`, a change of
//!   the files on disk).
//! - [`once`]: `--once`, every rule evaluated once.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http::web::Web;
use crate::http::{self, AppState, ReloadFn};

pub mod exporter;
pub mod once;
pub mod reload;

pub use exporter::{load_rules, ConfigFiles, Exporter};
pub use once::run_once;
pub use reload::ReloadTrigger;

/// How the exporter runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: Vec<PathBuf>,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    /// Whether `POST /-/reload` reloads.
    pub lifecycle: Lifecycle,
    /// Poll the rules files this often and reload when their content changes.
    pub auto_reload: AutoReload,
    /// `--web.config.file`, already loaded (an invalid file stops the start before this).
    pub web: Option<Arc<Web>>,
}

/// `--web.enable-lifecycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// `POST /-/reload` reloads.
    Enabled,
    /// It answers 403; SIGHUP still reloads.
    Disabled,
}

/// `--rules.auto-reload-interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoReload {
    Off,
    Every(Duration),
}

/// The state the HTTP side serves from.
fn http_state(exporter: &Arc<Exporter>, opts: &Options) -> AppState {
    let reload: Option<ReloadFn> = (opts.lifecycle == Lifecycle::Enabled).then(|| {
        let ex = exporter.clone();
        let f: ReloadFn = Arc::new(move || {
            let ex = ex.clone();
            Box::pin(async move { ex.reload(ReloadTrigger::Http).await })
        });
        f
    });
    AppState {
        store: exporter.publisher.snapshot.clone(),
        exposition: exporter.exposition.clone(),
        status: exporter.publisher.status.clone(),
        reload,
        telemetry_path: opts.telemetry_path.clone(),
        web: exporter.files.web.clone(),
    }
}

/// Runs the exporter until `shutdown` completes. Returns once the server has stopped.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let rules = load_rules(&opts.rules).map_err(|d| anyhow::anyhow!("invalid rules:\n{d}"))?;
    let files = ConfigFiles { rules: opts.rules.clone(), web: opts.web.clone() };
    let exporter = Exporter::start(files, &rules).await;
    reload::listen_for_sighup(exporter.clone());
    if let AutoReload::Every(every) = opts.auto_reload {
        tokio::spawn(reload::watch_files(exporter.clone(), every));
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let (bound, server) = http::serve(opts.listen, http_state(&exporter, &opts), async move {
        let _ = server_stop.wait_for(|s| *s).await;
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}; pick another --web.listen-address", opts.listen))?;
    tracing::info!(address = %bound, rules = rules.rules.len(), "listening");
    let server = tokio::spawn(server);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Stop evaluating (cancelling in-flight queries on the server) while in-flight responses finish;
    // all of it within the 5 s an orchestrator usually grants.
    let grace = Duration::from_millis(4500);
    let stopped = async {
        tokio::join!(exporter.scheduler.shutdown(grace), async {
            let _ = server.await;
        })
    };
    if tokio::time::timeout(grace, stopped).await.is_err() {
        tracing::warn!("shutdown did not finish in time; exiting anyway");
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
