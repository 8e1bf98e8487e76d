//! `TempPostgres::keep_until_exit`: a server kept for the whole process is gone once the process has
//! exited, both when its tests pass and when one fails. The test runs this very test binary again as
//! a child (with `KEEP_UNTIL_EXIT_CHILD` set), which keeps a server and reports where it lives.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use tempdb::TempPostgres;

const CHILD_ENV: &str = "KEEP_UNTIL_EXIT_CHILD";

/// In the child: keeps a server, prints `DIR <data dir>` and `PORT <port>`, and passes or fails as
/// told. In a normal run it does nothing.
#[test]
fn child_keeps_a_server() {
    let Some(mode) = std::env::var_os(CHILD_ENV) else { return };
    let pg = TempPostgres::start().expect("start").keep_until_exit();
    let dir = pg.psql("postgres", "show data_directory").expect("psql");
    println!("DIR {dir}\nPORT {}", pg.port());
    assert_eq!(mode, "pass", "failing on purpose");
}

fn run_child(mode: &str) -> (bool, PathBuf, u16) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", "child_keeps_a_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(key).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no {key} in the child's output:\n{stdout}"))
            .trim()
            .to_string()
    };
    (out.status.success(), PathBuf::from(field("DIR ")), field("PORT ").parse().expect("a port"))
}

#[test]
fn a_kept_server_is_gone_after_the_process_exits() {
    for (mode, success) in [("pass", true), ("fail", false)] {
        let (ok, dir, port) = run_child(mode);
        assert_eq!(ok, success, "child in mode {mode}");
        assert!(!dir.exists(), "{mode}: data directory {} left behind", dir.display());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{mode}: something still listens on {port}");
    }
}
