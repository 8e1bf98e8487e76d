//! Build script: records the git revision and the compiler version for `sql_signal_exporter_build_info`,
//! and links the exporter binary as a position-dependent executable on Linux.
//!
//! Not position-independent (`-no-pie`), because a PIE's pointers to its own data (vtables, string
//! tables, `.data.rel.ro`) are patched by the loader at start, which turns every page holding one
//! into private memory that stays resident for the life of the process; at a fixed address they are
//! resolved at link time and stay clean file pages, resident only when read. Measured on the idle
//! exporter (README, "Performance"): 0.44 MiB of relocated pages down to 0.04 MiB. The cost is ASLR
//! of the binary's own image (libraries, heap and stacks stay randomised). A link argument, so every
//! build of the binary (`cargo build --release`, the Dockerfile, the bench) gets it without
//! RUSTFLAGS; the tests and examples keep the default.

use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(rev) = revision {
        println!("cargo:rustc-env=SQL_SIGNAL_EXPORTER_REVISION={rev}");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Some(version) = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
    {
        println!("cargo:rustc-env=SQL_SIGNAL_EXPORTER_RUSTC={version}");
    }
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
