//! `--rules.auto-reload-interval`: reload when the rules files' content changes.
//!
//! Kubernetes updates a mounted ConfigMap by swapping a symlink to a new directory, which a watch on
//! the file misses; polling the content's hash sees every kind of update (as Prometheus 3's
//! `--config.auto-reload-interval` does). A change goes through the same validate-then-swap as
//! SIGHUP, and a broken file is tried once per change, not once per poll.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::app::Exporter;

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

/// Polls `files` every `interval` and reloads `exporter` when their content differs from what was
/// last seen. Runs until the task is aborted.
pub async fn watch(exporter: Arc<Exporter>, files: Vec<PathBuf>, interval: Duration) {
    let mut seen = content_hash(&files).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = content_hash(&files).await;
        if now != seen {
            seen = now;
            tracing::info!("rules files changed on disk, reloading");
            let _ = exporter.reload().await;
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
