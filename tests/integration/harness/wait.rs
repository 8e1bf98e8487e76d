//! The one polling loop: check a condition every [`PAUSE`] until it holds, or panic after a timeout
//! with what was awaited and whatever context the caller adds (say, the exporter's log).

use std::time::{Duration, Instant};

/// How long to sleep between checks.
pub const PAUSE: Duration = Duration::from_millis(100);

/// A deadline that panics with a useful message once passed.
struct Deadline<'a> {
    start: Instant,
    timeout: Duration,
    what: &'a str,
}

impl Deadline<'_> {
    fn check(&self, context: impl FnOnce() -> String) {
        if self.start.elapsed() > self.timeout {
            panic!("timed out after {:?} waiting for {}; {}", self.timeout, self.what, context());
        }
    }
}

/// Blocks until `cond` holds; after `timeout` panics with `what` and `context()`.
pub fn until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Deadline { start: Instant::now(), timeout, what };
    while !cond() {
        deadline.check(&context);
        std::thread::sleep(PAUSE);
    }
}

/// [`until`] for async tests: sleeps on the runtime, so the runtime's other tasks keep running.
pub async fn until_async(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Deadline { start: Instant::now(), timeout, what };
    while !cond() {
        deadline.check(String::new);
        tokio::time::sleep(PAUSE).await;
    }
}
