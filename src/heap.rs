//! Gives freed heap back to the system.
//!
//! glibc keeps memory freed below live data inside the process (one arena: `main.rs` sets it), and
//! only its top is trimmed on its own. Two moments free much at once:
//! - a load of the rules compiles the rules' JSON Schema and drops it when done (`rules::schema`):
//!   0.35 MiB of idle RSS, for well under a millisecond per load;
//! - an evaluation drops its rows, its families, its rendered text and the snapshot it replaced:
//!   at 100k series tens of MB, which stayed resident until the next evaluation allocated again, so
//!   each evaluation's peak was reached on top of the previous one's leftovers (README, "Performance").
//!
//! `malloc_trim(0)` returns every whole free page of the heap; it walks the free lists under the
//! arena's lock, once per evaluation, off the scrape path. Its cost per evaluation has not been
//! measured apart; the bench's capacity and scrape sections run with it.

/// Returns the free pages of the heap to the system (glibc); elsewhere nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases free memory of glibc's allocator; it takes its own locks.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_heap() {}
