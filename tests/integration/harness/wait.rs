//! The one polling loop: check a condition every [`PAUSE`] until it holds, or panic after a timeout
//! with what was awaited and whatever context the caller adds (say, the exporter's log). Tests wait on
//! conditions through it and never sleep as synchronisation.

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

/// Blocks until `poll` gives a value and returns it; after `timeout` panics with `what` and
/// `context()`.
pub fn until_some<T>(
    timeout: Duration,
    what: &str,
    mut poll: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Deadline { start: Instant::now(), timeout, what };
    loop {
        if let Some(value) = poll() {
            return value;
        }
        deadline.check(&context);
        std::thread::sleep(PAUSE);
    }
}

/// Blocks until `cond` holds; after `timeout` panics with `what` and `context()`.
pub fn until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    until_some(timeout, what, || cond().then_some(()), context)
}

/// [`until`] for async tests: sleeps on the runtime, so the runtime's other tasks keep running.
pub async fn until_async(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Deadline { start: Instant::now(), timeout, what };
    while !cond() {
        deadline.check(String::new);
        tokio::time::sleep(PAUSE).await;
    }
}
