//! Defaults and bounds of rule settings, and the parsing of durations against them.
//!
//! Every limit a rules file is held to is defined here once, so the loader, the schema's wording and
//! the documentation cannot drift apart.

use std::path::Path;
use std::time::Duration;

use super::loader::Ctx;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest timeout (`timeout`, `lock_timeout`, `connect_timeout`): PostgreSQL takes its
/// timeouts as milliseconds in an i32, about 24.8 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 3600);

/// The longest interval: a rule is evaluated at least once a week, so that a result is never older
/// than that; a week is also far inside what tokio's timers (about 2 years) and `Instant` can hold.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest `freshness.max_age`: a year (a yearly job's result may be judged by its age).
pub const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The bound of the duration named `key`, and why, for the message when a file exceeds it.
fn max_duration(key: &str) -> (Duration, &'static str) {
    match key {
        "interval" => (MAX_INTERVAL, "the longest interval; a rule is evaluated at least once a week"),
        "max_age" => (MAX_AGE, "the longest max_age"),
        _ => (MAX_TIMEOUT, "the longest timeout PostgreSQL accepts"),
    }
}

/// A whole number of days as the rules file writes it (`7d`), from the limit itself.
fn in_days(d: Duration) -> String {
    format!("{}d", d.as_secs() / (24 * 3600))
}

/// Slack past a rule's interval plus timeout before the watchdog counts it as stuck (a busy runtime
/// is not a stall).
pub const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);

/// How long `interval` and `timeout` allow a rule to go without finishing an evaluation before the
/// watchdog serves it fail-safe.
pub fn watchdog_limit(interval: Duration, timeout: Duration) -> Duration {
    interval + timeout + WATCHDOG_MARGIN
}

/// The most targets a signal may declare (after lists expand).
pub const MAX_TARGETS: usize = 100_000;

/// The shortest interval: a rule queries its database once per interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

pub use super::duration::{not_a_duration, parse_duration};

/// The default timeout of a rule: 30s, or less for a short interval, always below the interval.
pub fn default_timeout(interval: Duration) -> Duration {
    // `interval * 3` could overflow; this cannot.
    DEFAULT_TIMEOUT.min(interval - interval / 4)
}

impl Ctx<'_> {
    /// A rule's interval and timeout. The default timeout is below any interval, so only a timeout
    /// the file gives can be too long, and the error then points at it.
    pub(super) fn interval_and_timeout(
        &mut self,
        path: &Path,
        base: &str,
        interval: Option<&str>,
        timeout: Option<&str>,
    ) -> (Duration, Duration) {
        let mut interval = self.duration(path, format!("{base}/interval"), interval, DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            self.error(
                path,
                format!("{base}/interval"),
                format!(
                    "interval: {} is shorter than 1s; a rule queries its database once per interval",
                    humantime::format_duration(interval)
                ),
            );
            interval = MIN_INTERVAL;
        }
        let timeout = self.duration(path, format!("{base}/timeout"), timeout, default_timeout(interval));
        if timeout >= interval {
            self.error(
                path,
                format!("{base}/timeout"),
                format!(
                    "timeout ({}) must be shorter than interval ({}) so that a rule never overlaps itself",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
        (interval, timeout)
    }

    pub(super) fn duration(&mut self, path: &Path, pointer: String, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match parse_duration(t) {
                Ok(d) if d > max_duration(pointer.rsplit('/').next().unwrap_or_default()).0 => {
                    let key = pointer.rsplit('/').next().unwrap_or_default().to_string();
                    let (max, why) = max_duration(&key);
                    self.error(path, pointer, format!("{key}: {t} is longer than {}, {why}", in_days(max)));
                    default
                }
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    let key = pointer.rsplit('/').next().unwrap_or_default().to_string();
                    self.error(path, pointer, format!("{key}: a duration must be longer than zero"));
                    default
                }
                Err(msg) => {
                    self.error(path, pointer, msg);
                    default
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timeout_stays_below_the_interval() {
        assert_eq!(default_timeout(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(default_timeout(Duration::from_secs(20)), Duration::from_secs(15));
        assert!(default_timeout(Duration::from_millis(1)) < Duration::from_millis(1));
    }

    /// The errors of a file whose database and signal take the given durations.
    fn errors(connect_timeout: &str, interval: &str, max_age: &str) -> Vec<String> {
        let text = format!(
            "version: 1\ndatabases:\n  main:\n    dsn: \"host=localhost\"\n    connect_timeout: {connect_timeout}\n    \
             lock_timeout: {connect_timeout}\nsignals:\n  - name: s\n    database: main\n    interval: {interval}\n    \
             timeout: 1s\n    labels: [c]\n    targets: [{{c: x}}]\n    window: 1\n    freshness: {{column: t, max_age: {max_age}}}\n    \
             values: {{v: integer}}\n    success: \"v == 0\"\n    metrics:\n      up: {{name: a_up, help: h}}\n      \
             error: {{name: a_error, help: h}}\n    query: \"SELECT c, t, v FROM x\"\n"
        );
        let sources = [(std::path::PathBuf::from("r.yaml"), text)];
        match crate::rules::load_sources(&sources, &crate::rules::LoadOptions::default()) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.into_iter().map(|d| d.message).collect(),
        }
    }

    #[test]
    fn each_kind_of_duration_has_its_own_cap() {
        assert_eq!(errors("24d", "7d", "365d"), Vec::<String>::new());
        assert_eq!(errors("1s", "1m", "1s"), Vec::<String>::new());
        assert_eq!(
            errors("24d 1s", "7d 1s", "365d 1s"),
            vec![
                "connect_timeout: 24d 1s is longer than 24d, the longest timeout PostgreSQL accepts",
                "lock_timeout: 24d 1s is longer than 24d, the longest timeout PostgreSQL accepts",
                "interval: 7d 1s is longer than 7d, the longest interval; a rule is evaluated at least once a week",
                "max_age: 365d 1s is longer than 365d, the longest max_age",
            ]
        );
        // A freshness of 30 days, refused before the caps were split, is fine.
        assert_eq!(errors("5s", "1h", "30d"), Vec::<String>::new());
    }
}
