//! The one skip guard for tests that need something from outside the repository (a browser,
//! Prometheus, PgBouncer, the release binary): outside CI a missing one skips the test (or the part
//! that needs it) and says so; under CI, where `.ci/run` installs everything, it fails the test.

use std::process::{Command, Stdio};

/// Whether this is a CI run: `CI` is set (CI services set `CI=true`) and is not `false` or `0`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// Deals with `what` missing: under CI panics with `fix`; otherwise prints that the test (or the part
/// of it that needs `what`) is skipped. The caller then skips that part.
pub fn missing(what: &str, fix: &str) {
    assert!(!under_ci(), "{what} is missing under CI: {fix}");
    eprintln!("skipped: {what} is missing (outside CI; {fix})");
}

/// Whether `program --version` runs; when it does not, [`missing`] decides between a skip and a
/// failure. `install` says how to get it.
pub fn program(program: &str, install: &str) -> bool {
    let runs = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        missing(&format!("`{program}`"), install);
    }
    runs
}
