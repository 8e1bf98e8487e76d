//! Wiring: load rules, start the scheduler and the HTTP server, reload on request, stop cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::rules::{self, LoadOptions, RuleSet};
use crate::serve::http::{self, AppState, ReloadFn};
use crate::serve::scheduler::Scheduler;
use crate::serve::self_metrics::{unix_now, SelfMetrics};
use crate::serve::snapshot::SnapshotStore;
use crate::serve::status::StatusStore;
use crate::serve::web::Web;

/// How the exporter runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: Vec<PathBuf>,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub enable_lifecycle: bool,
    /// Poll the rules files this often and reload when their content changes.
    pub auto_reload_interval: Option<Duration>,
    /// `--web.config.file`, already loaded (an invalid file stops the start before this).
    pub web: Option<Arc<Web>>,
}

/// Loads the rules files, logging every warning; on failure returns every diagnostic, a line each.
pub fn load_rules(paths: &[PathBuf]) -> Result<RuleSet, String> {
    match rules::load_files(paths, &LoadOptions::default()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            Ok(loaded.rules)
        }
        Err(diags) => Err(diags.to_string()),
    }
}

/// The running exporter: what reload and shutdown act on.
pub struct Exporter {
    pub scheduler: Scheduler,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<SelfMetrics>,
    pub status: Arc<StatusStore>,
    rules: Vec<PathBuf>,
}

impl Exporter {
    /// Starts evaluating `rules` (already loaded and valid).
    pub async fn start(rule_files: Vec<PathBuf>, rules: &RuleSet) -> Arc<Exporter> {
        let store = Arc::new(SnapshotStore::new());
        let metrics = Arc::new(SelfMetrics::new());
        let status = Arc::new(StatusStore::new());
        let scheduler = Scheduler::new(store.clone(), metrics.clone(), status.clone());
        scheduler.apply(rules).await;
        metrics.reload_successful.set(1);
        metrics.reload_success_timestamp.set(unix_now());
        Arc::new(Exporter { scheduler, store, metrics, status, rules: rule_files })
    }

    /// Re-reads the rules files; applies them only if every file is valid.
    pub async fn reload(&self) -> Result<(), String> {
        let paths = self.rules.clone();
        let loaded = match tokio::task::spawn_blocking(move || load_rules(&paths)).await {
            Ok(loaded) => loaded,
            Err(e) => Err(format!("internal error while loading the rules, please report it: {e}")),
        };
        match loaded {
            Ok(rules) => {
                self.scheduler.apply(&rules).await;
                self.metrics.reload_successful.set(1);
                self.metrics.reload_success_timestamp.set(unix_now());
                tracing::info!(rules = rules.rules.len(), "rules reloaded");
                Ok(())
            }
            Err(diags) => {
                for line in diags.lines() {
                    tracing::error!("{line}");
                }
                tracing::error!("rules not reloaded; the previous rules keep running");
                self.metrics.reload_successful.set(0);
                Err(diags)
            }
        }
    }
}

/// Reloads the rules and the web config; each keeps its previous version when its new one is invalid.
async fn reload_all(ex: &Exporter, web: Option<&Arc<Web>>) -> Result<(), String> {
    let rules = ex.reload().await;
    let web = match web {
        Some(web) => web.reload_async().await,
        None => Ok(()),
    };
    if web.is_err() {
        ex.metrics.reload_successful.set(0);
    }
    match (rules, web) {
        (Ok(()), Ok(())) => Ok(()),
        (rules, web) => Err([rules.err(), web.err()].into_iter().flatten().collect::<Vec<_>>().join("\n")),
    }
}

/// Runs the exporter until `shutdown` completes. Returns once the server has stopped.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let rules = load_rules(&opts.rules).map_err(|d| anyhow::anyhow!("invalid rules:\n{d}"))?;
    let exporter = Exporter::start(opts.rules.clone(), &rules).await;

    let reload: Option<ReloadFn> = opts.enable_lifecycle.then(|| {
        let ex = exporter.clone();
        let web = opts.web.clone();
        let f: ReloadFn = Arc::new(move || {
            let ex = ex.clone();
            let web = web.clone();
            Box::pin(async move { reload_all(&ex, web.as_ref()).await })
        });
        f
    });
    let state = AppState {
        store: exporter.store.clone(),
        metrics: exporter.metrics.clone(),
        status: exporter.status.clone(),
        reload,
        telemetry_path: opts.telemetry_path.clone(),
    };

    // SIGHUP reloads, whatever --web.enable-lifecycle says (as Prometheus does).
    #[cfg(unix)]
    {
        let ex = exporter.clone();
        let web = opts.web.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload instead");
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received, reloading rules");
                let _ = reload_all(&ex, web.as_ref()).await;
            }
        });
    }

    if let Some(every) = opts.auto_reload_interval {
        tokio::spawn(super::auto_reload::watch(exporter.clone(), opts.rules.clone(), every));
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let (bound, server) = http::serve_with(opts.listen, state, opts.web.clone(), async move {
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

/// Evaluates every rule once, concurrently, and returns the exposition and whether all succeeded.
pub async fn run_once(rules: &RuleSet) -> (Vec<u8>, bool) {
    use crate::serve::evaluate::Status;
    use crate::source::{as_source, Sources};
    // The sources the running exporter would build: the same connection bound and timeouts.
    let mut sources = Sources::build(rules, Sources::default());
    let mut handles = Vec::new();
    for rule in &rules.rules {
        let rule = rule.clone();
        let slots: Vec<_> = rule.databases().into_iter().map(|d| sources.slot(d)).collect();
        handles.push(tokio::spawn(async move {
            let srcs: Vec<_> = slots.iter().map(as_source).collect();
            let outcome = crate::serve::evaluate::evaluate_on(&rule, &srcs).await;
            match &outcome.status {
                Status::Error(reason) => tracing::error!(rule = %rule.name, reason = %reason, "rule evaluation failed"),
                Status::Timeout => tracing::error!(rule = %rule.name, reason = "timeout", "rule evaluation timed out"),
                Status::Success => {}
            }
            log_targets(&rule, &outcome.targets);
            outcome
        }));
    }
    let mut out = Vec::new();
    let mut all_ok = true;
    for h in handles {
        match h.await {
            Ok(outcome) => {
                all_ok &= outcome.status == Status::Success;
                out.extend(crate::eval::exposition::render(&outcome.families));
            }
            Err(e) => {
                all_ok = false;
                tracing::error!("rule task failed: {e}");
            }
        }
    }
    sources.shut_down(Duration::from_secs(1)).await;
    (out, all_ok)
}

/// For `--once`: why each signal target is not up, a line each (the status page's details).
fn log_targets(rule: &crate::rules::model::Rule, targets: &crate::serve::status::Targets) {
    use crate::serve::status::TargetView;
    let crate::rules::model::RuleKind::Signal(s) = &rule.kind else { return };
    for t in targets.errors_first() {
        let target = || s.labels.iter().zip(&t.labels).map(|(l, v)| format!("{l}={v}")).collect::<Vec<_>>().join(",");
        match t.state {
            TargetView::Failed(failure, detail) => {
                tracing::warn!(rule = %rule.name, target = %target(), state = failure.key(), detail = %detail, "target in error")
            }
            TargetView::Down => tracing::info!(rule = %rule.name, target = %target(), state = "down", "target down"),
            TargetView::Up => break, // up comes last
        }
    }
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
