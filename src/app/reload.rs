//! The one reload path. Whatever triggers it, a reload re-reads the rules files and the web config,
//! applies each only if it is valid (the previous one keeps running otherwise), records the result
//! in `sql_signal_exporter_config_last_reload_*`, and invalidates the scrape cache.
//!
//! `--rules.auto-reload-interval` polls the files' content: Kubernetes updates a mounted ConfigMap
//! by swapping a symlink to a new directory, which a watch on the file misses; polling the
//! content's hash sees every kind of update (as Prometheus 3's `--config.auto-reload-interval`
//! does). A broken file is tried once per change, not once per poll.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::exporter::{load_rules, Exporter};
use crate::publish::self_metrics::unix_now;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// SIGHUP.
    Signal,
    /// `POST /-/reload`.
    Http,
    /// `--rules.auto-reload-interval` saw the files change.
    FileChange,
}

impl fmt::Display for ReloadTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReloadTrigger::Signal => "SIGHUP",
            ReloadTrigger::Http => "POST /-/reload",
            ReloadTrigger::FileChange => "rules files changed on disk",
        })
    }
}

impl Exporter {
    /// Reloads the rules and the web config; each keeps its previous version when its new one is
    /// invalid. `Err` carries every diagnostic, a line each.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<(), String> {
        tracing::info!(trigger = %trigger, "reloading rules and web config");
        let rules = self.reload_rules().await;
        let web = match &self.files.web {
            Some(web) => web.reload_async().await,
            None => Ok(()),
        };
        let result = match (rules, web) {
            (Ok(()), Ok(())) => Ok(()),
            (rules, web) => Err([rules.err(), web.err()].into_iter().flatten().collect::<Vec<_>>().join("\n")),
        };
        let metrics = &self.publisher.metrics;
        metrics.reload_successful.set(i64::from(result.is_ok()));
        if result.is_ok() {
            metrics.reload_success_timestamp.set(unix_now());
        }
        self.exposition.invalidate();
        result
    }

    /// Re-reads the rules files; applies them only if every file is valid.
    async fn reload_rules(&self) -> Result<(), String> {
        let paths = self.files.rules.clone();
        let loaded = match tokio::task::spawn_blocking(move || load_rules(&paths)).await {
            Ok(loaded) => loaded,
            Err(e) => Err(format!("internal error while loading the rules, please report it: {e}")),
        };
        match loaded {
            Ok(rules) => {
                self.scheduler.apply(&rules).await;
                tracing::info!(rules = rules.rules.len(), "rules reloaded");
                Ok(())
            }
            Err(diags) => {
                for line in diags.lines() {
                    tracing::error!("{line}");
                }
                tracing::error!("rules not reloaded; the previous rules keep running");
                Err(diags)
            }
        }
    }
}

/// Reloads on SIGHUP, whatever `--web.enable-lifecycle` says (as Prometheus does).
pub fn listen_for_sighup(exporter: Arc<Exporter>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload instead");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = exporter.reload(ReloadTrigger::Signal).await;
        }
    });
}

/// A hash of the files' contents in order (an unreadable file hashes as its error kind, so it is a
/// change too, and is reported by the reload it triggers).
pub async fn content_hash(files: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        match tokio::fs::read(f).await {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => format!("{:?}", e.kind()).hash(&mut h),
        }
    }
    h.finish()
}

/// Polls the exporter's rules files every `interval` and reloads when their content differs from
/// what was last seen. Runs until the task is aborted.
pub async fn watch_files(exporter: Arc<Exporter>, interval: Duration) {
    let files = exporter.files.rules.clone();
    let mut seen = content_hash(&files).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = content_hash(&files).await;
        if now != seen {
            seen = now;
            let _ = exporter.reload(ReloadTrigger::FileChange).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hash_follows_content_not_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.yaml");
        std::fs::write(&file, "a").expect("write");
        let first = content_hash(std::slice::from_ref(&file)).await;
        assert_eq!(first, content_hash(std::slice::from_ref(&file)).await);
        // A symlink swap, as Kubernetes does it: new content at the same path.
        let other = dir.path().join("r2.yaml");
        std::fs::write(&other, "b").expect("write");
        std::fs::rename(&other, &file).expect("rename");
        assert_ne!(first, content_hash(std::slice::from_ref(&file)).await);
        std::fs::remove_file(&file).expect("remove");
        assert_ne!(first, content_hash(std::slice::from_ref(&file)).await);
    }
}
