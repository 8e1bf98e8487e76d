//! Throwaway PostgreSQL servers for tests, the demo and benchmarks (and MariaDB servers:
//! [`TempMariaDb`], in `mariadb`).
//!
//! The exporter's whole job is running SQL against PostgreSQL, so its tests
//! must run against a *real* server, not a mock: error codes, type mapping,
//! timeouts and "database is down" behaviour only mean something when a real
//! PostgreSQL produces them. Nobody should have to set such a server up by
//! hand either — not a developer running `cargo test`, not CI on a fresh
//! machine, not someone trying the demo. [`TempPostgres`] therefore starts a
//! private server from the installed PostgreSQL binaries in a fresh temporary
//! directory, on a free loopback port, and tears it down again on drop.
//!
//! What a started instance looks like:
//!
//! * data directory, unix socket and `postgres.log` live in a fresh
//!   `ssx-pg-<pid>-<n>-<rand>/` directory (a short path on purpose: unix
//!   socket paths are limited to ~107 bytes) under `/dev/shm` when that is a
//!   tmpfs with at least 1 GiB free — `initdb` is about four times faster
//!   there (0.3 s instead of 1.2 s measured on the development machine) —
//!   else under `/tmp`; the environment variable `TEMPDB_DIR` forces another
//!   parent (say `/tmp` for a benchmark whose data should not sit in RAM);
//! * the server listens on `127.0.0.1` only; every login (TCP and unix
//!   socket) needs a password (`scram-sha-256`);
//! * the bootstrap superuser is `postgres`; a login role `exporter` — the role
//!   the exporter and the tests connect as — gets `pg_read_all_data` and
//!   `pg_monitor`, so it can read every table and every statistics view but
//!   write nothing;
//! * a database `demo` (owned by `postgres`, `CONNECT` granted to `exporter`)
//!   is created by [`TempPostgres::start`] itself, so `dsn("demo")` works at
//!   once; [`TempPostgres::create_database`] makes more;
//! * durability is switched off (`fsync`, `synchronous_commit`,
//!   `full_page_writes`) because the data is thrown away anyway.
//!
//! PostgreSQL refuses to run as root. When this process runs as root (as it
//! does on the development machines and in CI), `initdb`, `pg_ctl` and the
//! server run as the unprivileged `postgres` system user through `runuser`
//! (or `su` where `runuser` is missing), and the temporary directory is
//! handed to that user. `psql` itself runs as the current user and connects
//! over TCP with the superuser's password.
//!
//! The binaries are looked up in `$PG_BIN_DIR` if set, else in the
//! highest-numbered `/usr/lib/postgresql/<version>/bin` that has `initdb`,
//! else through `initdb` on `PATH`.
//!
//! The API is blocking (it runs `initdb`, `pg_ctl` and `psql` as child
//! processes); starting an instance takes about a second. From async code
//! either accept the short block (fine in tests) or use
//! `tokio::task::spawn_blocking`.
//!
//! Error messages never contain a password or a DSN: every message built
//! here is scrubbed of both generated passwords before it is returned.
//!
//! A server meant to live as long as the process (one per test binary,
//! shared by its tests) is handed to [`TempPostgres::keep_until_exit`], which
//! stops it from an `atexit` hook, since statics are never dropped.
//!
//! Servers of a process that died without running `Drop` (killed test run,
//! Ctrl-C) are cleaned up by the next process that starts an instance: it
//! stops the servers of `ssx-pg-<pid>-*` directories (in `/dev/shm`, `/tmp`
//! and `$TEMPDB_DIR`) whose `<pid>` no longer exists and removes those
//! directories.
//!
//! This crate lives under `tests/` as a workspace member, a dev-dependency of
//! the exporter: the shipped library neither contains it nor needs its
//! `std::os::unix` imports. Modules: `instance` (the handle and its API),
//! `startup` (initdb, configuration, port, bootstrap), `command` (running
//! the tools, as `postgres` when root), `locate` (finding the binaries),
//! `dirs` (instance directories and the stale sweep), `exit` (the `atexit`
//! hook), `util` (ports, randomness, quoting).

mod command;
mod dirs;
mod exit;
mod instance;
mod locate;
mod mariadb;
mod startup;
mod util;

pub use instance::{free_loopback_port, TempPostgres, TempPostgresOptions};
pub use mariadb::{TempMariaDb, TempMariaDbOptions};

use std::time::Duration;

/// The only address the server listens on.
pub(crate) const HOST: &str = "127.0.0.1";
/// The bootstrap superuser role (and, when running as root, the OS user).
pub(crate) const SUPERUSER: &str = "postgres";
/// The OS user PostgreSQL runs as when this process is root.
pub(crate) const OS_USER: &str = "postgres";
/// The login role tests and the exporter connect as.
pub(crate) const EXPORTER_ROLE: &str = "exporter";
/// The database [`TempPostgres::start`] creates.
pub(crate) const DEMO_DATABASE: &str = "demo";
/// Where instance directories go when `/dev/shm` is not usable.
pub(crate) const TMP_ROOT: &str = "/tmp";
/// Preferred parent of instance directories: tmpfs makes `initdb` ~4x faster.
pub(crate) const SHM_ROOT: &str = "/dev/shm";
/// `/dev/shm` is used only with at least this much room (KiB): Docker's
/// default of 64 MiB would not even hold one data directory.
pub(crate) const SHM_MIN_FREE_KIB: u64 = 1024 * 1024;
/// Environment variable forcing the parent of instance directories.
pub(crate) const DIR_ENV: &str = "TEMPDB_DIR";
/// Longest unix socket path (`sun_path` is 108 bytes with the final NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;
/// Prefix of instance directory names: `ssx-pg-<pid>-<n>-<rand>`.
pub(crate) const DIR_PREFIX: &str = "ssx-pg-";
/// How many lines of `postgres.log` an error message carries.
pub(crate) const LOG_TAIL_LINES: usize = 30;
/// `pg_ctl start -t`.
pub(crate) const START_TIMEOUT_SECS: u64 = 30;
/// `pg_ctl stop -t`.
pub(crate) const STOP_TIMEOUT_SECS: u64 = 30;
/// Extra attempts with a fresh port when the chosen one was taken meanwhile.
pub(crate) const PORT_RETRIES: usize = 3;
/// Upper bound for a single `psql` run.
pub(crate) const PSQL_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for `initdb`.
pub(crate) const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// Replaces passwords in error messages.
pub(crate) const REDACTED: &str = "<redacted>";

/// Environment variables of libpq and the server tools that must not leak
/// from the caller's environment into the commands run here.
pub(crate) const PG_ENV_VARS: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGGSSENCMODE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGTARGETSESSIONATTRS",
    "PGCTLTIMEOUT",
    "PSQLRC",
];
