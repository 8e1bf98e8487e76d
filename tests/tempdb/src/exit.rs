//! Stopping the servers of [`TempPostgres::keep_until_exit`] (and `TempMariaDb`'s) when the
//! process exits.
//!
//! A server kept in a `static` (one per test binary, shared by its tests) is never dropped. libc's
//! `atexit` runs a hook when the process exits normally — `main` returning or `std::process::exit`,
//! which is how libtest ends a run with failures — without a constructor crate or a guard every test
//! would have to hold. A process killed by a signal runs no hook; the next process's sweep of stale
//! directories stops those servers.

use std::sync::{Mutex, Once};

use crate::TempPostgres;

/// Teardowns of the servers to stop at exit.
type Teardown = Box<dyn Fn() + Send>;
static KEPT: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());
/// The hook is registered once per process.
static HOOK: Once = Once::new();

extern "C" {
    /// `int atexit(void (*)(void))` from the C library std already links.
    fn atexit(hook: extern "C" fn()) -> std::os::raw::c_int;
}

/// Registers `pg` to be torn down at exit.
pub(crate) fn stop_at_exit(pg: &'static TempPostgres) {
    at_exit(Box::new(move || pg.teardown()));
}

/// Registers a server's teardown to run at exit.
pub(crate) fn at_exit(teardown: Teardown) {
    HOOK.call_once(|| {
        // SAFETY: `atexit` only stores the function pointer; `stop_all` is a plain `extern "C" fn`
        // that does not unwind (it catches panics).
        let rc = unsafe { atexit(stop_all) };
        if rc != 0 {
            tracing::warn!("atexit failed; a kept PostgreSQL is left to the next run's sweep");
        }
    });
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(teardown);
}

extern "C" fn stop_all() {
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    for teardown in kept {
        // A panic must not unwind into C.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(teardown));
    }
}
