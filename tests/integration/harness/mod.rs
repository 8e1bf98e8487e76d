//! What every integration test shares: a real exporter binary, real PostgreSQL servers, real HTTP,
//! and one way each to spawn, wait, parse and compare.
//!
//! - [`exporter`]: the one way to run the binary, as a server ([`Exporter::spawn`]), for `--once`
//!   ([`once`]) or as a plain [`command`] (from the repository root, no `SSE_*` variables inherited).
//! - [`wait`]: the one polling loop (sync for tests that drive the binary, async for tests that run
//!   the library on their own runtime).
//! - [`exposition`]: the one parser of the text format, keyed both by printed series and by family and
//!   label set, and the one fail-safe check of a signal ([`assert_fail_safe`]).
//! - [`golden`]: byte-for-byte expectations kept as files in `tests/integration/golden/`.
//! - [`api`]: every library path the tests use, in one place.
//! - [`proxy`]: a TCP proxy that stalls or drops connections on command, and a silent server.
//! - [`tool`]: the skip guard for a tool from outside the repository: skip outside CI, fail under it.
//!
//! # PostgreSQL servers: one shared, a few private
//!
//! Starting a server costs an `initdb` and a start-up (about a second on two cores), and a dozen at
//! once starve the timing-sensitive tests. So ([`pg`]):
//!
//! - **Shared**: [`Db::shared`] gives a test a fresh database on the one server of this test
//!   process, created with `CREATE DATABASE ... TEMPLATE template_kanary` (the Kanary schema of
//!   `examples/kanary/schema.sql`, loaded once), and drops it when the [`Db`] is dropped. Tests may do
//!   anything inside their database, but must not assume they are alone on the server: queries on
//!   server-wide views (`pg_stat_activity`) filter on `datname = current_database()`. The server is
//!   started by the first test that asks and stopped when the process exits
//!   ([`tempdb::TempPostgres::keep_until_exit`]); a killed run leaves it to the next run's sweep.
//! - **Private**: tests that stop or restart the server, read server-wide state (every database,
//!   `pg_stat_statements`) or need a server option get [`Db::private`]: a server of their own, with the
//!   Kanary schema in `demo`. At most [`pg::MAX_PRIVATE_SERVERS`] (3) run at once; further tests wait.
//!
//! # Golden files
//!
//! [`golden::check`] compares an exposition with `tests/integration/golden/NAME`. After a deliberate
//! change of the output, `UPDATE_GOLDEN=1 cargo test --test integration` rewrites the files instead of
//! comparing (review the diff before committing it); `kanary::golden_kanary_files_agree_with_the_go_exporter_rules`
//! then still compares them with the expectation derived independently from the Go exporter's rules.

pub mod api;
pub mod exporter;
pub mod exposition;
pub mod golden;
pub mod mysql;
pub mod pg;
pub mod proxy;
pub mod tool;
pub mod wait;

use std::path::{Path, PathBuf};

pub use exporter::{command, once, Exporter};
pub use exposition::{assert_fail_safe, is_fail_safe, labels, value, Exposition, Labels, Samples, Signal};
pub use mysql::MyDb;
pub use pg::Db;

/// The repository root (the exporter package's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `rules/kanary.yaml` with textual replacements, written to `dir/kanary.yaml`.
pub fn kanary_rules(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo_root().join("rules/kanary.yaml")).expect("rules/kanary.yaml");
    for (from, to) in replacements {
        assert!(text.contains(from), "rules/kanary.yaml no longer contains {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join("kanary.yaml");
    std::fs::write(&path, text).expect("write the rules");
    path
}

/// `rules/kanary.yaml`'s signal: `kanary_up` and `kanary_error` over its 24 targets.
pub fn kanary_signal() -> Signal {
    Signal::new("kanary_up", "kanary_error", 24)
}

/// The reason `rules/kanary.yaml` gives a target whose query failed.
pub const KANARY_DB_ERROR: &str = "db_error";

/// The Kanary schema (table `data`, function `kanary_run`).
pub fn kanary_schema() -> String {
    std::fs::read_to_string(repo_root().join("examples/kanary/schema.sql")).expect("examples/kanary/schema.sql")
}
