//! The watchdog: a rule that has not finished an evaluation for too long is served fail-safe.
//!
//! Every evaluation ends within its timeout by construction (the source enforces it), so a rule that
//! has not finished one for longer than its interval plus its timeout plus [`MARGIN`] is stuck for a
//! reason nothing else catches: a hung task, a bug. Its last snapshot must not go on saying "up" or
//! "down" on its own, so the watchdog replaces it: a signal's fail-safe series (error=1, up=1), none
//! of a metric rule's families. It logs once per stall, counts it in
//! `sql_signal_exporter_rule_watchdog_expirations_total`, and leaves the rule's task alone: when the
//! task finishes an evaluation, its result is served again.
//!
//! The watchdog runs in its own task, one per rule, beside the rule's task. Publishing and the
//! heartbeat share one lock, so a fail-safe can never overwrite a result that finished first.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::eval::exposition;
use crate::rules::model::Rule;
use crate::serve::evaluate;
use crate::serve::self_metrics::SelfMetrics;
use crate::serve::snapshot::SnapshotStore;

/// Slack past interval plus timeout before a rule counts as stuck (a busy runtime is not a stall).
pub const MARGIN: Duration = Duration::from_secs(5);

/// How often a stalled rule is looked at again.
const POLL: Duration = Duration::from_secs(1);

/// When a rule last finished an evaluation, and whether the watchdog has taken over its snapshot.
pub struct Heartbeat {
    state: Mutex<Beat>,
}

struct Beat {
    last: Instant,
    stalled: bool,
}

impl Heartbeat {
    pub fn new() -> Arc<Heartbeat> {
        Arc::new(Heartbeat { state: Mutex::new(Beat { last: Instant::now(), stalled: false }) })
    }

    fn lock(&self) -> MutexGuard<'_, Beat> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a finished evaluation with `publish`, then records it. Returns whether the rule had
    /// been stalled (the watchdog served it fail-safe until now).
    pub fn finished(&self, publish: impl FnOnce()) -> bool {
        let mut beat = self.lock();
        publish();
        beat.last = Instant::now();
        std::mem::replace(&mut beat.stalled, false)
    }
}

/// How long `rule` may go without finishing an evaluation.
pub fn limit(rule: &Rule) -> Duration {
    rule.interval + rule.timeout + MARGIN
}

/// Watches `rule` until aborted (with its task).
pub async fn watch(rule: Arc<Rule>, heartbeat: Arc<Heartbeat>, store: Arc<SnapshotStore>, metrics: Arc<SelfMetrics>) {
    let limit = limit(&rule);
    loop {
        let due = {
            let beat = heartbeat.lock();
            if beat.stalled {
                Instant::now() + POLL
            } else {
                beat.last + limit
            }
        };
        tokio::time::sleep_until(due).await;
        let mut beat = heartbeat.lock();
        if beat.stalled || beat.last.elapsed() < limit {
            continue;
        }
        beat.stalled = true;
        let reason = format!(
            "the rule has not finished an evaluation for {}; served fail-safe until it does",
            humantime::format_duration(Duration::from_secs(beat.last.elapsed().as_secs()))
        );
        tracing::error!(rule = %rule.name, limit = %humantime::format_duration(limit), "{reason}");
        let outcome = evaluate::failed(&rule, reason);
        store.update(&rule.name, exposition::render(&outcome.families));
        metrics.rule_watchdog_expirations.with_label_values(&[&rule.name]).inc();
        metrics.rule_last_status.with_label_values(&[&rule.name]).set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{load_sources, LoadOptions};

    const RULES: &str = "version: 1\ndatabases:\n  main: {dsn: \"host=localhost\"}\nsignals:\n  - name: s\n    \
        database: main\n    interval: 10s\n    timeout: 2s\n    labels: [c]\n    targets: [{c: x}]\n    window: 1\n    \
        values: {v: integer}\n    success: \"v == 0\"\n    metrics:\n      up: {name: a_up, help: h}\n      \
        error: {name: a_error, help: h}\n    query: \"SELECT c, v FROM t\"\n";

    fn body(store: &SnapshotStore) -> String {
        String::from_utf8_lossy(&store.load().body).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rule_that_stops_finishing_is_served_fail_safe_until_it_finishes_again() {
        let loaded = load_sources(&[("r.yaml".into(), RULES.to_string())], &LoadOptions::default()).expect("valid");
        let rule = loaded.rules.rules[0].clone();
        assert_eq!(limit(&rule), Duration::from_secs(17));
        let store = Arc::new(SnapshotStore::new());
        store.set_rules(vec!["s".into()]);
        store.update("s", b"a_up{c=\"x\"} 0\n".to_vec());
        let metrics = Arc::new(SelfMetrics::new());
        let heartbeat = Heartbeat::new();
        let task = tokio::spawn(watch(rule.clone(), heartbeat.clone(), store.clone(), metrics.clone()));

        // Within the limit the last result stands.
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(body(&store), "a_up{c=\"x\"} 0\n");
        // Past it, the signal is fail-safe: error=1 and up=1, never a stale "down".
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = body(&store);
        assert!(text.contains("a_error{c=\"x\",reason=") && text.contains("} 1"), "{text}");
        assert!(text.contains("a_up{c=\"x\"} 1"), "{text}");
        let count = || metrics.rule_watchdog_expirations.with_label_values(&["s"]).get();
        assert_eq!(count(), 1);
        // Counted once per stall, not once per poll.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(count(), 1);
        // A finished evaluation takes over again, and a new stall is counted again.
        assert!(heartbeat.finished(|| store.update("s", b"a_up{c=\"x\"} 0\n".to_vec())));
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(body(&store), "a_up{c=\"x\"} 0\n");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(), 2);
        task.abort();
    }
}
