//! Backoff between connection attempts to one database, for every kind of source with a server.

use std::time::Duration;

/// Exponential backoff with jitter after failed connection attempts, so rules (and reloads) never
/// turn an outage into a connection storm. It never waits longer than `max`, which is below the
/// shortest interval of the database's rules, so recovery is seen within one interval.
pub(crate) struct Backoff {
    max: Duration,
    state: std::sync::Mutex<BackoffState>,
}

#[derive(Default)]
struct BackoffState {
    failures: u32,
    until: Option<std::time::Instant>,
    last_error: String,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Backoff {
        Backoff { max, state: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn blocked_for(&self) -> Option<Duration> {
        let s = self.lock();
        s.until.and_then(|u| u.checked_duration_since(std::time::Instant::now()))
    }

    pub(crate) fn last_error(&self) -> String {
        self.lock().last_error.clone()
    }

    pub(crate) fn failed(&self, error: &str) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        // 0.25 s, 0.5 s, 1 s, … capped at max, each with ±25 % jitter.
        let base = Duration::from_millis(250).saturating_mul(1u32 << (s.failures - 1).min(16)).min(self.max);
        let jitter = 0.75 + 0.5 * pseudo_random_unit();
        s.until = Some(std::time::Instant::now() + base.mul_f64(jitter));
        s.last_error = error.to_string();
    }

    pub(crate) fn succeeded(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.until = None;
    }
}

/// A number in [0, 1) that differs between calls and processes; enough for jitter.
fn pseudo_random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
