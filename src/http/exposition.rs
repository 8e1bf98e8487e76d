//! The body of a scrape, in the format it negotiated: the snapshot's bytes (or their gzip,
//! compressed once per rule update) and the exporter's own metrics (then OpenMetrics' `# EOF`), rendered at most once per [`OWN_METRICS_MAX_AGE`] and again whenever
//! the snapshot or the reload status changed (so they always agree with the rules' series served
//! beside them). Responses go out as a list of shared buffers, never copied into one.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;

use crate::eval::exposition::{openmetrics, Format};
use crate::publish::self_metrics::SelfMetrics;
use crate::publish::snapshot::{Snapshot, SnapshotStore};

/// The longest the exporter's own metrics are reused while nothing they report changed except the
/// process's (CPU time, memory, open files). Rendering them reads several `/proc` files, which cost
/// more than serving a small body; Prometheus scrapes every 15 s or so and never notices.
pub const OWN_METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// Whether a scrape's body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// What the exporter's own metrics were rendered for: a change of any part renders them anew.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OwnKey {
    generation: u64,
    reload_successful: i64,
    reload_timestamp: u64,
}

/// The exporter's own metrics as rendered for one snapshot, in each format when first asked.
struct OwnMetrics {
    key: OwnKey,
    rendered_at: Instant,
    text: OnceLock<Bytes>,
    /// OpenMetrics, `# EOF` included: the end of an OpenMetrics body.
    openmetrics: OnceLock<Bytes>,
    /// The end of the gzip member for that snapshot in each format (see
    /// [`crate::publish::snapshot::GzipBody::finish`]).
    gzip_tail: [OnceLock<Bytes>; 2],
}

impl OwnMetrics {
    fn tail(&self, metrics: &SelfMetrics, format: Format) -> Bytes {
        match format {
            Format::Text => self.text.get_or_init(|| Bytes::from(metrics.render_in(format))),
            Format::OpenMetrics => self.openmetrics.get_or_init(|| {
                let mut out = metrics.render_in(format);
                out.extend_from_slice(openmetrics::EOF);
                Bytes::from(out)
            }),
        }
        .clone()
    }

    fn gzip_tail(&self, format: Format) -> &OnceLock<Bytes> {
        match format {
            Format::Text => &self.gzip_tail[0],
            Format::OpenMetrics => &self.gzip_tail[1],
        }
    }
}

/// Builds `/metrics` bodies from the current snapshot and a cache of the exporter's own metrics.
pub struct Exposition {
    store: Arc<SnapshotStore>,
    metrics: Arc<SelfMetrics>,
    own: ArcSwapOption<OwnMetrics>,
}

impl Exposition {
    pub fn new(store: Arc<SnapshotStore>, metrics: Arc<SelfMetrics>) -> Exposition {
        Exposition { store, metrics, own: ArcSwapOption::empty() }
    }

    fn own(&self, snapshot: &Snapshot) -> Arc<OwnMetrics> {
        let key = OwnKey {
            generation: snapshot.generation(),
            reload_successful: self.metrics.reload_successful.get(),
            reload_timestamp: self.metrics.reload_success_timestamp.get().to_bits(),
        };
        if let Some(own) = self.own.load_full() {
            if own.key == key && own.rendered_at.elapsed() < OWN_METRICS_MAX_AGE {
                return own;
            }
        }
        // Scrapes racing past the expiry may each render; the last one stored wins. No lock.
        let fresh = Arc::new(OwnMetrics {
            key,
            rendered_at: Instant::now(),
            text: OnceLock::new(),
            openmetrics: OnceLock::new(),
            gzip_tail: [OnceLock::new(), OnceLock::new()],
        });
        self.own.store(Some(fresh.clone()));
        fresh
    }

    /// The snapshot store the bodies are read from.
    pub fn store(&self) -> Arc<SnapshotStore> {
        self.store.clone()
    }

    /// Forgets the exporter's own metrics, so the next scrape renders them (after a reload).
    pub fn invalidate(&self) {
        self.own.store(None);
    }

    /// The body of a scrape as buffers to send in order, in `format` and `encoding`: the rules'
    /// snapshot, then the exporter's own metrics.
    pub async fn body(&self, format: Format, encoding: Encoding) -> Vec<Bytes> {
        let snapshot = self.store.load();
        let own = self.own(&snapshot);
        let own_text = own.tail(&self.metrics, format);
        if encoding == Encoding::Identity {
            let mut chunks = snapshot.body_in(format).to_vec();
            chunks.push(own_text);
            return chunks;
        }
        let gz = snapshot.gzip(format).await;
        let tail = own.gzip_tail(format).get_or_init(|| gz.finish(&own_text)).clone();
        let mut chunks = Vec::with_capacity(gz.chunks.len() + 1);
        chunks.extend(gz.chunks.iter().cloned());
        chunks.push(tail);
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::snapshot::Rendered;

    fn exposition() -> Exposition {
        let store = Arc::new(SnapshotStore::new());
        store.set_rules(vec!["r".into()]);
        store.update("r", Rendered::same(b"# TYPE r_up gauge\nr_up 1\n".to_vec()));
        let metrics = Arc::new(SelfMetrics::new());
        metrics.reload_successful.set(1);
        Exposition::new(store, metrics)
    }

    #[tokio::test]
    async fn own_metrics_follow_the_snapshot_and_the_reload_status() {
        let ex = exposition();
        let first = ex.own(&ex.store.load());
        assert!(Arc::ptr_eq(&first, &ex.own(&ex.store.load())), "reused within the max age");
        ex.store.update("r", Rendered::same(b"r_up 0\n".to_vec()));
        let second = ex.own(&ex.store.load());
        assert!(!Arc::ptr_eq(&first, &second), "rendered anew for a new snapshot");
        ex.metrics.reload_successful.set(0);
        let third = ex.own(&ex.store.load());
        assert!(!Arc::ptr_eq(&second, &third), "rendered anew when a reload failed");
        assert!(std::str::from_utf8(&third.tail(&ex.metrics, Format::Text))
            .unwrap()
            .contains("sql_signal_exporter_config_last_reload_successful 0"));
        ex.invalidate();
        assert!(!Arc::ptr_eq(&third, &ex.own(&ex.store.load())));
    }

    #[tokio::test]
    async fn plain_and_gzip_bodies_carry_the_same_text() {
        use std::io::Read;
        let ex = exposition();
        for format in Format::ALL {
            let plain: Vec<u8> = ex.body(format, Encoding::Identity).await.concat();
            let gz: Vec<u8> = ex.body(format, Encoding::Gzip).await.concat();
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut unzipped).unwrap();
            assert_eq!(unzipped, plain);
            let text = String::from_utf8(plain).unwrap();
            assert!(text.starts_with("# TYPE r_up gauge\nr_up 1\n"));
            assert!(text.contains("sql_signal_exporter_build_info{"));
            assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics, "{text}");
        }
    }
}
