//! The running exporter: the scheduler and what it publishes to, the scrape cache, and where its
//! rules and web config come from, which a reload re-reads.

use std::path::PathBuf;
use std::sync::Arc;

use crate::http::exposition::Exposition;
use crate::http::web::Web;
use crate::publish::event::Publisher;
use crate::publish::self_metrics::unix_now;
use crate::rules::{self, LoadOptions, RuleSet};
use crate::run::scheduler::Scheduler;

/// Loads the rules files, logging every warning; on failure returns every diagnostic, a line each.
/// The heap the load freed (its compiled schema) goes back to the system, and the code pages only a
/// load runs (YAML, the JSON Schema) are dropped (`crate::resident`).
pub fn load_rules(paths: &[PathBuf]) -> Result<RuleSet, String> {
    let loaded = rules::load_files(paths, &LoadOptions::default());
    crate::resident::release_freed_heap();
    crate::resident::drop_read_only_image_pages();
    match loaded {
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
    pub publisher: Publisher,
    /// The scrape bodies' cache, which a reload invalidates.
    pub exposition: Arc<Exposition>,
    pub(super) files: ConfigFiles,
}

/// Where the exporter's configuration comes from: what a reload re-reads.
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    pub rules: Vec<PathBuf>,
    /// `--web.config.file`, already loaded.
    pub web: Option<Arc<Web>>,
}

impl From<Vec<PathBuf>> for ConfigFiles {
    fn from(rules: Vec<PathBuf>) -> ConfigFiles {
        ConfigFiles { rules, web: None }
    }
}

impl Exporter {
    /// Starts evaluating `rules` (already loaded and valid) that were read from `files`.
    pub async fn start(files: impl Into<ConfigFiles>, rules: &RuleSet) -> Arc<Exporter> {
        let publisher = Publisher::new();
        let scheduler = Scheduler::new(publisher.clone());
        scheduler.apply(rules).await;
        publisher.metrics.reload_successful.set(1);
        publisher.metrics.reload_success_timestamp.set(unix_now());
        let exposition = Arc::new(Exposition::new(publisher.snapshot.clone(), publisher.metrics.clone()));
        Arc::new(Exporter { scheduler, publisher, exposition, files: files.into() })
    }
}
